"""course_lib.grading: score tables, the instructor commands, and real grading.

The grading tests run otter's local grader (no Docker) on submissions of 00_setup: the
solved notebook scores full marks, an untouched one scores zero without crashing the grader,
and one that raises in exercise 1 keeps the points of the others. A tiny made-up assignment
checks the per-submission timeout.
"""

import os
import pathlib
import time
import uuid

import nbformat
import psutil
import pytest

from course_lib import cli, grading, notebooks, release

from .test_release import _question, _source

ROOT = notebooks.repo_root(pathlib.Path(__file__).parent)
v4 = nbformat.v4


# ------------------------------------------------------------------ tables and command line

ROWS = [
    {"submission": "a/00.ipynb", "assignment": "00_setup", "status": "graded",
     "scores": {"q1": [2, 2], "q2": [0, 2], "q10": [1.5, 3]}},
    {"submission": "b.ipynb", "assignment": "00_setup", "status": "timeout after 5 s", "scores": {}},
    {"submission": "c.ipynb", "assignment": "", "status": "no metadata", "scores": {}},
]


def test_write_tables(tmp_path):
    grading.write_tables(ROWS, tmp_path)
    lines = (tmp_path / "grades.csv").read_text().splitlines()
    assert lines[0] == "submission,assignment,status,score,possible,q1,q2,q10"
    assert lines[1] == "a/00.ipynb,00_setup,graded,3.5,7,2,0,1.5"
    assert lines[2] == "b.ipynb,00_setup,timeout after 5 s,0,0,,,"
    md = (tmp_path / "grades.md").read_text()
    assert "| submission | q1 (/2) | q2 (/2) | q10 (/3) | total | status |" in md
    assert "| a/00.ipynb | 2 | 0 | 1.5 | 3.5/7 | graded |" in md
    assert "## (not a course notebook)" in md


def test_assignment_name(tmp_path):
    nb = v4.new_notebook(metadata={"otter": {"assignment_name": "00_setup"}})
    nbformat.write(nb, tmp_path / "a.ipynb")
    (tmp_path / "b.ipynb").write_text("not json")
    assert grading.assignment_name(tmp_path / "a.ipynb") == "00_setup"
    assert grading.assignment_name(tmp_path / "b.ipynb") is None


def test_cli_has_the_instructor_commands(capsys):
    for command in ("autograder", "grade"):
        with pytest.raises(SystemExit) as exc:
            cli.main([command, "--help"])
        assert exc.value.code == 0
    assert "SUBMISSIONS" in capsys.readouterr().out.upper()


# ------------------------------------------------------------------ grading 00_setup for real

def _answer_cells(nb):
    return [c for c in nb.cells if "otter_answer_cell" in c.metadata.get("tags", [])]


@pytest.fixture(scope="module")
def graded(tmp_path_factory, request):
    """Grade three submissions of 00_setup: solved, untouched, raising in exercise 1."""
    if not os.environ.get("COURSE_MIRROR"):
        pytest.skip("needs COURSE_MIRROR (the README's offline route)")
    tmp = tmp_path_factory.mktemp("grading")
    source = nbformat.read(ROOT / "notebooks" / "source" / "00_setup.ipynb", as_version=4)
    student = nbformat.read(ROOT / "notebooks" / "student" / "00_setup.ipynb", as_version=4)
    subs = tmp / "submissions"
    (subs / "alice").mkdir(parents=True)
    nbformat.write(release.fill_solutions(student, source), subs / "alice" / "00_setup.ipynb")
    nbformat.write(student, subs / "untouched.ipynb")
    raising = release.fill_solutions(student, source)
    _answer_cells(raising)[0].source = 'raise RuntimeError("gave up")\n' + _answer_cells(raising)[0].source
    nbformat.write(raising, subs / "raises_in_q1.ipynb")
    grading.build_autograder(tmp / "autograder", ROOT, only=["00_setup"])
    rows = grading.grade_folder(subs, tmp / "grades", tmp / "autograder", timeout=600, root=ROOT, jobs=3)
    return {r["submission"]: r for r in rows}, tmp / "grades"


def _points(source_nb) -> dict:
    """{question: points} from the source's BEGIN QUESTION cells."""
    import yaml

    configs = [yaml.safe_load(c.source.split("\n", 1)[1]) for c in source_nb.cells
               if c.cell_type == "raw" and c.source.startswith("# BEGIN QUESTION")]
    return {c["name"]: c["points"] for c in configs}


@pytest.mark.slow
def test_the_solved_notebook_scores_full_marks(graded):
    rows, out = graded
    row = rows["alice/00_setup.ipynb"]
    source = nbformat.read(ROOT / "notebooks" / "source" / "00_setup.ipynb", as_version=4)
    assert row["status"] == "graded"
    assert {q: s for q, (s, _) in row["scores"].items()} == _points(source)
    points = list(_points(source).values())
    cells = " | ".join(f"{p:g}" for p in points)
    total = f"{sum(points):g}"
    assert f"| alice/00_setup.ipynb | {cells} | {total}/{total} | graded |" in (out / "grades.md").read_text()


@pytest.mark.slow
def test_an_untouched_notebook_scores_zero_without_crashing(graded):
    row = graded[0]["untouched.ipynb"]
    source = nbformat.read(ROOT / "notebooks" / "source" / "00_setup.ipynb", as_version=4)
    assert row["status"] == "graded" and set(row["scores"]) == set(_points(source))
    assert all(score == 0 and possible > 0 for score, possible in row["scores"].values())


@pytest.mark.slow
def test_an_exercise_that_raises_keeps_the_other_points(graded):
    row = graded[0]["raises_in_q1.ipynb"]
    assert row["status"] == "graded"
    assert row["scores"]["q1"][0] == 0
    assert all(score == possible for q, (score, possible) in row["scores"].items() if q != "q1")


@pytest.mark.slow
def test_a_submission_that_hangs_is_killed_at_the_timeout(tmp_path, monkeypatch):
    root = tmp_path / "course"
    (root / "notebooks" / "source").mkdir(parents=True)
    nbformat.write(_source(_question("x = 49  # SOLUTION")), root / "notebooks" / "source" / "99_tiny.ipynb")
    [zip_path] = grading.build_autograder(tmp_path / "ag", root)
    hang = v4.new_notebook(cells=[v4.new_code_cell("import time\ntime.sleep(600)")],
                           metadata={"otter": {"assignment_name": "99_tiny"},
                                     "kernelspec": {"name": "python3", "display_name": "Python 3",
                                                    "language": "python"}})
    nbformat.write(hang, tmp_path / "hang.ipynb")
    mark = uuid.uuid4().hex
    monkeypatch.setenv("COURSE_TEST_MARK", mark)
    start = time.monotonic()
    result = grading.grade_one(tmp_path / "hang.ipynb", zip_path, timeout=20)
    assert result == {"status": "timeout after 20 s", "scores": {}}
    assert time.monotonic() - start < 60
    time.sleep(1)
    assert not [p.pid for p in psutil.process_iter() if _has_mark(p, mark)], "grader processes survived"


def _has_mark(proc, mark) -> bool:
    try:
        return proc.environ().get("COURSE_TEST_MARK") == mark
    except (psutil.Error, OSError):
        return False
