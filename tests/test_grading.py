"""course_lib.grading: setup-cell normalisation, source guards, score tables, and real grading.

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

from course_lib import cli, grading, notebooks

ROOT = notebooks.repo_root(pathlib.Path(__file__).parent)
v4 = nbformat.v4


# ------------------------------------------------------------------ setup cell

def test_normalise_setup_replaces_an_old_install_block():
    old = ('import sys\nif "google.colab" in sys.modules:  # Colab only\n'
           '    %pip install -q "course-lib @ git+https://example.org/x"\n'
           'import course_lib as cl\ncfg = cl.setup("03_x")')
    new = grading.normalise_setup(old)
    assert new == grading.colab_install_block() + 'import course_lib as cl\ncfg = cl.setup("03_x")'
    assert grading.normalise_setup(new) == new


def test_normalise_setup_refuses_a_cell_without_the_block():
    with pytest.raises(ValueError, match="no `if \"google.colab\" in sys.modules:`"):
        grading.normalise_setup('import course_lib as cl\ncfg = cl.setup("03_x")')


def test_colab_block_pins_the_packages_it_must_not_touch():
    block = grading.colab_install_block()
    assert "tensorflow|keras|numpy" in block and f"-c {grading.PINS_FILE}" in block
    assert "--upgrade" not in block and " -U " not in block
    from IPython.core.inputtransformer2 import TransformerManager

    code = TransformerManager().transform_cell(block)
    compile(code, "<setup>", "exec")
    assert "get_ipython().system(" in code and "run_line_magic('pip'" in code


# ------------------------------------------------------------------ source guards

def _source(cells, name="99_tiny"):
    nb = v4.new_notebook(cells=[v4.new_raw_cell(f"# ASSIGNMENT CONFIG\nname: {name}"), *cells])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _test_cell(body, hidden=False, message='"x should be 49"'):
    config = ("hidden: true\n" if hidden else "") + f"failure_message: {message}\n"
    return v4.new_code_cell(f'""" # BEGIN TEST CONFIG\n{config}""" # END TEST CONFIG\n{body}')


def _question(answer, wrapped=True, tests=None):
    tests = tests or [_test_cell("assert x == 49"), _test_cell("assert isinstance(x, int)", hidden=True)]
    body = [v4.new_raw_cell("# BEGIN SOLUTION"), v4.new_code_cell(answer), v4.new_raw_cell("# END SOLUTION")] \
        if wrapped else [v4.new_code_cell(answer)]
    return [v4.new_raw_cell("# BEGIN QUESTION\nname: q1\npoints: 2"), v4.new_markdown_cell("Set x."), *body,
            v4.new_raw_cell("# BEGIN TESTS"), *tests, v4.new_raw_cell("# END TESTS"),
            v4.new_raw_cell("# END QUESTION")]


def test_a_good_source_has_no_problems():
    assert grading.source_problems(_source(_question("x = 49  # SOLUTION")), "99_tiny") == []


@pytest.mark.parametrize("cells, expected", [
    (_question("x = 49"), "has no `# SOLUTION`"),
    (_question("x = 49  # SOLUTION", wrapped=False), "outside a raw `# BEGIN SOLUTION` block"),
    (_question("x = 49  # SOLUTION", tests=[_test_cell("assert x == 49", hidden=True)]), "no public test"),
    (_question("x = 49  # SOLUTION", tests=[_test_cell("assert x", message="x: 49")]), "not valid YAML"),
])
def test_source_problems_name_what_would_leak_or_break(cells, expected):
    problems = grading.source_problems(_source(cells), "99_tiny")
    assert any(expected in p for p in problems), problems


def test_source_problems_checks_the_config_name():
    assert "must be the file name" in grading.source_problems(_source([]), "98_other")[0]


def test_solution_lines_and_solved_source():
    cell = "def f(n):\n    # BEGIN SOLUTION\n    y = n * 2\n    return y\n    # END SOLUTION\nz = f(3)  # SOLUTION"
    assert grading.solution_lines(cell) == ["y = n * 2", "return y", "z = f(3)"]
    assert grading.solved_source(cell) == "def f(n):\n    y = n * 2\n    return y\nz = f(3)"


def test_secrets_skip_text_that_is_public_anyway():
    nb = _source(_question("x = 49  # SOLUTION", tests=[
        _test_cell("assert x == 49"), _test_cell("assert x == 49\nassert x > 48", hidden=True)]))
    assert grading.secrets(nb) == ["assert x > 48", "x = 49"]


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
    for command in ("student", "autograder", "grade"):
        with pytest.raises(SystemExit) as exc:
            cli.main([command, "--help"])
        assert exc.value.code == 0
    assert "SUBMISSIONS" in capsys.readouterr().out.upper()


def test_cli_student_check_passes_on_the_committed_notebooks(capsys):
    assert cli.main(["student", "--check"]) == 0, capsys.readouterr().out


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
    nbformat.write(grading.fill_solutions(student, source), subs / "alice" / "00_setup.ipynb")
    nbformat.write(student, subs / "untouched.ipynb")
    raising = grading.fill_solutions(student, source)
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
    assert "| alice/00_setup.ipynb | 2 | 2 | 3 | 7/7 | graded |" in (out / "grades.md").read_text()


@pytest.mark.slow
def test_an_untouched_notebook_scores_zero_without_crashing(graded):
    row = graded[0]["untouched.ipynb"]
    assert row["status"] == "graded" and len(row["scores"]) == 3
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
