"""The end-of-notebook questionnaires (course_lib.quiz): digests, and every source's questionnaire.

Each source must end with a questionnaire of 5-8 auto-checked questions and a "Further research"
list. The source's answers must pass every check and the student's placeholders must fail them;
both are checked here by running only the questionnaire cells (no notebook run needed).
"""

import hashlib
import pathlib
import re

import nbformat
import pytest

import course_lib as cl
from course_lib import quiz
from course_lib.tools import classroom, notebooks

ROOT = notebooks.repo_root(pathlib.Path(__file__).parent)
SOURCES = notebooks.source_notebooks(ROOT)


def test_digest_reads_answers_leniently_and_depends_on_notebook_and_number():
    d = quiz.digest("03_fine_tuning", 2, "b")
    assert re.fullmatch(r"[0-9a-f]{16}", d), d
    assert d == hashlib.sha256(b"03_fine_tuning|2|b").hexdigest()[:16], "the sources' digests were made this way"
    assert quiz.digest("03_fine_tuning", 2, " (B) ") == d
    assert quiz.digest("03_fine_tuning", 2, "b)") == d
    assert quiz.digest("03_fine_tuning", 3, "b") != d
    assert quiz.digest("04_domain_mismatch", 2, "b") != d
    assert quiz.digest("03_fine_tuning", 2, "c") != d


def test_correct_compares_one_answer_and_rejects_placeholders():
    key = quiz.digest("nb", 1, "a")
    assert quiz.correct({1: "a"}, "nb", 1, key)
    assert quiz.correct({"1": "A"}, "nb", 1, key)
    assert not quiz.correct({1: "b"}, "nb", 1, key)
    assert not quiz.correct({1: ...}, "nb", 1, key)
    assert not quiz.correct({}, "nb", 1, key)
    assert not quiz.correct({1: None}, "nb", 1, key)


def test_a_quiz_that_is_not_a_dict_gets_a_clear_error():
    with pytest.raises(TypeError, match=r"`quiz` must be a dict.*Received: ellipsis.*Fix: run the cell"):
        quiz.correct(..., "nb", 1, quiz.digest("nb", 1, "a"))


def test_given_checks_the_form_and_matches_the_key():
    assert quiz.given({1: "c"}, 1, "abcd") and quiz.given({"1": " (C) "}, 1, "abcd")
    assert not quiz.given({1: "e"}, 1, "abcd") and not quiz.given({1: "ab"}, 1, "abcd")
    assert not quiz.given({1: ...}, 1, "abcd") and not quiz.given({}, 1, "abcd")
    assert quiz.matches({1: "B)"}, 1, "b") and not quiz.matches({1: "c"}, 1, "b")
    assert not quiz.matches({1: ...}, 1, "b") and not quiz.matches({}, 1, "b")


def test_choices_reads_each_questions_letters():
    prompt = "## Questionnaire\n\nIntro.\n\n1. Why?\n   - (a) x\n   - (b) y (see (c))\n2. How?\n   - (a) u\n" \
             "   - (b) v\n   - (c) w\n\nAfter."
    assert quiz.choices(prompt) == {1: "ab", 2: "abc"}


def _questionnaire(nb):
    found = [q for q in notebooks.graded_structure(nb) if q["name"] == quiz.QUESTION]
    assert len(found) == 1, f"expected one question named {quiz.QUESTION!r}; found {len(found)}"
    return found[0]


def _run(sources, answers_cell=None):
    """Run the questionnaire's answer cell (or `answers_cell`) and each test; return failing tests."""
    namespace = {"cl": cl}
    exec(answers_cell if answers_cell is not None else sources["answers"], namespace)
    failed = []
    for k, test in enumerate(sources["tests"], 1):
        try:
            exec(test, namespace)
        except AssertionError:
            failed.append(k)
    return failed


def _cells(nb):
    q = _questionnaire(nb)
    (answers,) = [nb.cells[i].source for i in q["solution_cells"]]
    return {"answers": answers, "tests": [nb.cells[i].source for i in q["tests"]]}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_every_notebook_ends_with_a_questionnaire_its_answers_pass(path):
    nb = nbformat.read(path, as_version=4)
    cells = _cells(nb)
    n = len(cells["tests"])
    assert 5 <= n <= 8, f"{path.stem}: the questionnaire has {n} checked questions; the course asks for 5-8"
    for k, test in enumerate(cells["tests"], 1):
        assert f'cl.quiz.correct(quiz, "{path.stem}", {k}, "' in test, f"{path.stem}: test {k} checks question {k}"
        assert not notebooks.is_hidden_test(test), "questionnaire checks are public: they are the learner's feedback"
        assert re.search(r"failure_message: .*(reread|revisit|look again|see )", test, re.I), \
            f"{path.stem}: question {k}'s failure message must point at what to reread"
    assert _run(cells) == [], f"{path.stem}: the source's own answers fail these questions"
    placeholders = re.sub(r'=\s*"[^"]*"\s*# SOLUTION', "= ...", cells["answers"])
    assert _run(cells, placeholders) == list(range(1, n + 1)), "an unanswered question must fail its check"
    prompt = next(c.source for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## Questionnaire"))
    numbered = re.findall(r"^(\d+)\. ", prompt, re.M)
    assert numbered == [str(k) for k in range(1, n + 1)], f"{path.stem}: the prompt numbers its {n} questions"
    # a class's build (course_lib.tools.classroom) reads each question's letters and the keys, and rewrites one sentence
    letters = quiz.choices(prompt)
    keys = classroom.source_keys(nb, path.stem)
    assert all(len(letters[k]) >= 2 and keys[k] in letters[k] for k in keys), (path.stem, letters, keys)
    assert classroom.SELF_PACED_NOTE in prompt, f"{path.stem}: the prompt lacks the sentence a class build replaces"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_every_notebook_lists_further_research(path):
    nb = nbformat.read(path, as_version=4)
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    further = [s for s in md if s.startswith("## Further research")]
    assert len(further) == 1, f"{path.stem}: expected one '## Further research' section"
    items = re.findall(r"^- ", further[0], re.M)
    assert len(items) >= 3, f"{path.stem}: Further research lists {len(items)} items; give at least 3"
    assert md.index(further[0]) == len(md) - 1, "Further research closes the notebook"
