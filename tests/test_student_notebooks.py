"""Every notebook as a student gets it (notebooks/student/), executed the way a learner runs it.

(a) With the source's solutions filled into its answer cells, the student notebook runs top to
    bottom in a fresh kernel, every public check (`grader.check`) passes, and the source's hidden
    tests, run right after each check, pass too. The student notebook holds the source's code
    cells, claims and tests, so this one execution per notebook covers what running the source
    covered, and what a learner's copy (grader cell, Colab install cell, embedded tests) does.
(b) Untouched, it runs without an error up to its first answer cell: those cells are exactly the
    first cells (a) executes, which a test checks, so (a) covers (b) without a second execution.

The source notebooks themselves run in `course run` and in the own-folder tests.
"""

import pathlib
import re

import nbformat
import pytest

from course_lib import notebooks, release

ROOT = notebooks.repo_root(pathlib.Path(__file__).parent)
NAMES = [p.stem for p in notebooks.source_notebooks(ROOT)]
CHECK = re.compile(r'grader\.check\("(\w+)"\)')
CELL_TIMEOUT = 900  # seconds, as nbval's --nbval-cell-timeout had it


def graded_copy(student, source):
    """The filled-in student notebook with each check asserted and the source's hidden tests after it."""
    nb = release.fill_solutions(student, source)
    hidden = {q["name"]: [release.strip_test_config(source.cells[i].source) for i in q["tests"]
                          if notebooks.is_hidden_test(source.cells[i].source)]
              for q in notebooks.graded_structure(source)}
    cells = []
    for cell in nb.cells:
        match = CHECK.fullmatch(cell.source.strip()) if cell.cell_type == "code" else None
        if not match:
            cells.append(cell)
            continue
        name = match.group(1)
        cells.append(nbformat.v4.new_code_cell(
            f'_check = grader.check("{name}")\n'
            f'assert _check.passed_all, "public check {name} failed:\\n" + _check.summary()'))
        cells += [nbformat.v4.new_code_cell(f"# hidden test of {name}\n{body}") for body in hidden.pop(name)]
    assert not hidden, f"checks missing from the student notebook: {sorted(hidden)}"
    nb.cells = cells
    return nb


def execute(nb, workdir: pathlib.Path):
    """Run `nb` in a fresh kernel, stopping at the first error; return (cell index, error) or None."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    workdir.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        failed = next(i for i, c in enumerate(nb.cells) if notebooks.cell_failed(c))
        return failed, f"{exc.ename}: {exc.evalue}\n--- cell {failed} ---\n{nb.cells[failed].source[:1500]}"
    return None


def _read(kind: str, name: str):
    return nbformat.read(ROOT / "notebooks" / kind / f"{name}.ipynb", as_version=4)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_filled_in_student_notebook_runs_and_passes_every_check(name, mirror_root, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    monkeypatch.delenv("COURSE_DATASET", raising=False)
    nb = graded_copy(_read("student", name), _read("source", name))
    first = first_answer_cell(nb)
    failure = execute(nb, tmp_path / name)
    assert failure is None or failure[0] >= first, \
        f"{name} (untouched student copy) failed before its first exercise, at {failure[1]}"
    assert failure is None, f"{name} (student copy, solutions filled in) failed at {failure[1]}"
    checks = [c for c in nb.cells if c.source.startswith("_check = grader.check(")]
    assert checks and all(not notebooks.cell_failed(c) for c in checks)


def first_answer_cell(nb) -> int:
    """Index of the first cell a learner answers in."""
    return next(i for i, c in enumerate(nb.cells) if "otter_answer_cell" in c.metadata.get("tags", []))


@pytest.mark.parametrize("name", NAMES)
def test_untouched_student_notebook_runs_up_to_its_first_answer_cell(name):
    """(b) without a second execution: the untouched notebook's cells before its first answer cell
    are, one for one, the cells the filled-in run (a) executes first in its fresh kernel, so (a)
    passing means they run without an error (an error there fails (a), which names the cell)."""
    student = _read("student", name)
    first = first_answer_cell(student)
    assert any(c.cell_type == "code" for c in student.cells[:first]), f"{name}: no code before the first answer cell"
    graded = graded_copy(student, _read("source", name))
    assert first_answer_cell(graded) == first
    assert [(c.cell_type, c.source) for c in graded.cells[:first]] == \
        [(c.cell_type, c.source) for c in student.cells[:first]], f"{name}: (a) does not run the untouched prefix"


def test_graded_copy_asserts_each_check_and_adds_the_hidden_tests():
    source, student = _read("source", "00_setup"), _read("student", "00_setup")
    nb = graded_copy(student, source)
    checks = [c.source for c in nb.cells if c.source.startswith("_check = grader.check(")]
    questions = [q["name"] for q in notebooks.graded_structure(source)]
    assert [CHECK.search(c).group(1) for c in checks] == questions
    hidden = [c.source for c in nb.cells if c.source.startswith("# hidden test of ")]
    n_hidden = sum(notebooks.is_hidden_test(source.cells[i].source)
                   for q in notebooks.graded_structure(source) for i in q["tests"])
    assert len(hidden) == n_hidden > 0
    assert not any("BEGIN TEST CONFIG" in h for h in hidden)
