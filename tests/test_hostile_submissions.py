"""Hostile 00_setup submissions, every answer wrong, graded in one batch: each scores only what its answers earn.

Each submission answers every exercise wrong and attacks the grader from its kernel the way a
student who wants points without answers would (issue 29; `tests/batch_00.py`'s `HOSTILE`):
- kernel hooks: a `post_run_cell` callback that clears the error of every cell, an AST transformer
  that turns `assert` into `pass`, and a self-restoring `np.allclose` patch;
- the names the tests read rebound (`candidates`, `np`, `cl`) and answer objects with
  `__array_function__` that claim to be anything NumPy asks;
- a submitted function that reads its callers' frames and `linecache` to put the test's source
  into an exception's class name, then its own `MissingResourceError`.
Each attack alone made the old in-kernel tests pass or leak. The judge (`course_lib.tools.judge`)
runs the tests in a process that never ran student code, so each scores 0 and stays "graded"; the
solved notebook in the same batch (`batch_00`, shared with `test_grading.py`) scores 14/14, and no
hidden test's text reaches any feedback file.
"""

import re

import pytest

from tests.batch_00 import HOSTILE, SOLVED


def _total(row) -> float:
    return sum(score for score, _ in row["scores"].values())


@pytest.mark.slow
def test_the_solved_notebook_scores_full_marks_in_the_same_batch(batch_00):
    row = batch_00.rows[SOLVED]
    assert row["status"] == "graded" and _total(row) == 14, row


@pytest.mark.slow
@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_submission_with_wrong_answers_scores_zero(batch_00, name):
    row = batch_00.rows[f"{name}.ipynb"]
    assert row["status"] == "graded", row["status"]
    assert _total(row) == 0, row["scores"]
    assert set(row["scores"]) == {"q1", "q2", "q3", "questionnaire"}


@pytest.mark.slow
def test_a_student_raised_missing_resource_error_is_the_students(batch_00):
    row = batch_00.rows["leaks_then_blames_the_machine.ipynb"]
    assert row["status"] == "graded"  # not "error ... check the grading machine"
    assert any("MissingResourceError" in m for m in row["feedback"]["q3"]), row["feedback"]


@pytest.mark.slow
def test_no_hidden_test_text_reaches_any_feedback(batch_00):
    texts = {p.name: p.read_text() for p in (batch_00.out / "feedback").iterdir()}
    assert len(texts) == len(batch_00.rows)
    lines = {line.strip() for t in batch_00.tests.values() for case in t["cases"] if case["hidden"]
             for line in case["code"].splitlines() if len(line.strip()) > 20}
    assert lines, "the autograder has hidden tests"
    # the channel is open: the answer cell that calls the leaking function itself gets its exception's name shown
    assert "raised LEAK_" in texts["leaks_then_blames_the_machine.md"]
    for name, text in texts.items():  # as written, or as a class name (every non-word character an underscore)
        flat = re.sub(r"\W", "_", text)
        leaked = [line for line in lines if line in text or re.sub(r"\W", "_", line) in flat]
        assert not leaked, f"{name} shows hidden test text: {leaked[:2]}"
