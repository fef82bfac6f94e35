"""Every notebook as a student gets it (notebooks/student/), run through nbval in the default suite.

(a) With the source's solutions filled into its answer cells, the student notebook runs top to
    bottom in a fresh kernel, every public check (`grader.check`) passes, and the source's hidden
    tests, run right after each check, pass too: tests/conftest.py writes these graded copies
    (tests/graded_notebooks.py) to build/nbval/<name>/<name>.ipynb at collection time, and nbval
    runs each code cell as a test item (`build/nbval/03_fine_tuning/03_fine_tuning.ipynb::Cell 12`),
    all cells of one notebook in one kernel on one worker. The student notebook holds the source's
    code cells, claims and tests, so this one execution per notebook covers what running the source
    covered, and what a learner's copy (grader cell, Colab install cell, embedded tests) does.
(b) Untouched, it runs without an error up to its first answer cell: those cells are exactly the
    first cells (a) executes (checked below), so (a) covers (b) without a second execution; a
    failure in one of them is reported as a failure of the untouched copy (conftest.py).

The source notebooks themselves run in `course run` and in the own-folder tests.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import nbformat
import pytest

from course_lib.tools import notebooks, release
from tests.graded_notebooks import CHECK, CLOSE, first_answer_cell, graded_copy, write_graded_copies

ROOT = notebooks.repo_root(pathlib.Path(__file__).parent)
NAMES = [p.stem for p in notebooks.source_notebooks(ROOT)]


def _read(kind: str, name: str):
    return nbformat.read(ROOT / "notebooks" / kind / f"{name}.ipynb", as_version=4)


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
    # nbval's "Cell N" counts code cells: a failure before this one is reported as the untouched copy's
    assert graded.metadata.course_nbval.first_answer_cell == sum(c.cell_type == "code" for c in student.cells[:first])


def test_graded_copy_asserts_each_check_and_has_the_judge_run_every_test():
    source, student = _read("source", "00_setup"), _read("student", "00_setup")
    nb = graded_copy(student, source)
    checks = [c.source for c in nb.cells if c.source.startswith("_check = grader.check(")]
    questions = [q["name"] for q in notebooks.graded_structure(source)]
    assert [CHECK.search(c).group(1) for c in checks] == questions
    assert all(f'_course_judge.check("{q}")' in c for q, c in zip(questions, checks))
    start = [c.source for c in nb.cells if "_InKernel(" in c.source]
    assert len(start) == 1 and nb.cells.index(next(c for c in nb.cells if "_InKernel(" in c.source)) < \
        nb.cells.index(next(c for c in nb.cells if c.source.startswith("_check")))
    hidden = [release.strip_test_config(source.cells[i].source) for q in notebooks.graded_structure(source)
              for i in q["tests"] if notebooks.is_hidden_test(source.cells[i].source)]
    assert hidden and all(repr(h) in start[0] for h in hidden)  # every hidden test, judged outside the kernel
    assert not any(h in c.source for h in hidden for c in nb.cells if c.source is not start[0])
    assert nb.cells[-1].source == CLOSE  # nbval kills the kernel: the judge and the temporary folders go before


def test_graded_copies_are_written_once_per_run_with_the_same_bytes(tmp_path):
    """Both xdist workers collect: the second finds this run's copies; a new run starts from empty folders."""
    first = write_graded_copies(ROOT, tmp_path, "run-1")
    assert [p.parent.name for p in first] == NAMES and all(p.name == f"{p.parent.name}.ipynb" for p in first)
    texts = [p.read_text(encoding="utf-8") for p in first]
    litter = first[0].parent / "left by a kernel.txt"
    litter.write_text("x")
    assert write_graded_copies(ROOT, tmp_path, "run-1") == first and litter.exists()
    assert write_graded_copies(ROOT, tmp_path, "run-2") == first and not litter.exists()
    assert [p.read_text(encoding="utf-8") for p in first] == texts
    meta = json.loads(texts[0])["metadata"]["course_nbval"]
    assert meta["env"] == {"COURSE_PROFILE": "fast"} and meta["unset"] == ["COURSE_DATASET"] and meta["needs_mirror"]


def test_the_suite_collects_every_notebook_cell_through_nbval(tmp_path):
    """`pytest --collect-only` lists each graded copy's code cells as nbval items, in order, nothing else."""
    env = {**os.environ, "COURSE_NBVAL_DIR": str(tmp_path / "nbval")}
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0",
                          "tests/test_student_notebooks.py"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    # (outside the checkout, as here, an item's id is tests/test_student_notebooks.py::graded::<name>.ipynb::Cell N)
    cells = [re.search(r"(\w+\.ipynb::Cell \d+)$", line).group(1)
             for line in out.stdout.splitlines() if ".ipynb::" in line]
    expected = []
    for name in NAMES:
        path = tmp_path / "nbval" / name / f"{name}.ipynb"
        n_code = sum(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells)
        expected += [f"{name}.ipynb::Cell {i}" for i in range(n_code)]
    assert sorted(cells) == sorted(expected) and len(cells) > 8 * 15


@pytest.mark.parametrize("kind", ["source", "student"])
def test_no_cell_carries_an_nbval_marker(kind):
    """nbval compares no output (none is stored) and must skip no cell nor accept an error in one."""
    markers = ("NBVAL_", "PYTEST_VALIDATE_IGNORE_OUTPUT")
    tags = ("nbval-", "raises-exception")
    for name in NAMES:
        for i, cell in enumerate(_read(kind, name).cells):
            if cell.cell_type != "code":
                continue
            assert not cell.outputs and cell.execution_count is None, f"{kind} {name} cell {i} has outputs"
            assert not any(m in line for line in cell.source.splitlines() if line.lstrip().startswith("#")
                           for m in markers), f"{kind} {name} cell {i} has an nbval marker comment"
            assert not any(t.startswith(tags) for t in cell.metadata.get("tags", [])), \
                f"{kind} {name} cell {i} has an nbval tag"
