"""The notebooks nbval runs in the default suite: each student notebook as a learner gets it, graded.

`graded_copy` fills the source's solutions into the student notebook's answer cells, asserts each
public check (`grader.check`), then has the judge (`course_lib.tools.judge_link.InKernel`, a process that
never runs the notebook's code, as `course grade` does) run the exercise's public and hidden tests
on the kernel's answers. A cell right after the first answer cell starts the judge with the source's tests. `write_graded_copies`
writes one per notebook to build/nbval/<name>/<name>.ipynb at collection time (tests/conftest.py),
where nbval collects each code cell as a test item and runs them in one kernel (cwd: that folder).
The notebook's metadata (`course_nbval`) tells the root conftest.py how to run it: the environment
the kernel gets, that it needs the mirror, and the first answer cell (the untouched student copy runs
without an error up to there: a failure before it is reported as such).
"""

import fcntl
import json
import pathlib
import re
import shutil

import nbformat

from course_lib.tools import notebooks, release

CHECK = re.compile(r'grader\.check\("(\w+)"\)')
KERNEL_ENV = {"COURSE_PROFILE": "fast"}  # what a learner's CPU run gets; COURSE_DATASET: the course's data
KERNEL_UNSET = ["COURSE_DATASET"]
# the last cell: nbval kills the kernel (no atexit), so the judge and the temporary folders go here
CLOSE = "_course_judge.close()\nimport shutil\nshutil.rmtree(_tests_dir, ignore_errors=True)  # the grader cell's"


def first_answer_cell(nb) -> int:
    """Index of the first cell a learner answers in."""
    return next(i for i, c in enumerate(nb.cells) if "otter_answer_cell" in c.metadata.get("tags", []))


def graded_copy(student, source):
    """The filled-in student notebook with each check asserted and the source's hidden tests after it."""
    nb = release.fill_solutions(student, source)
    tests = judge_tests(source)
    cells, checked = [], set()
    first = first_answer_cell(nb)
    for i, cell in enumerate(nb.cells):
        match = CHECK.fullmatch(cell.source.strip()) if cell.cell_type == "code" else None
        if not match:
            cells.append(cell)
            if i == first:  # the untouched prefix stays as it is; the judge imports while the cells run
                cells.append(nbformat.v4.new_code_cell(
                    "from course_lib.tools.judge_link import InKernel as _InKernel\n"
                    f"_course_judge = _InKernel({tests!r})  # the source's tests, public and hidden"))
            continue
        name = match.group(1)
        checked.add(name)
        cells.append(nbformat.v4.new_code_cell(
            f'_check = grader.check("{name}")\n'
            f'assert _check.passed_all, "public check {name} failed:\\n" + _check.summary()\n'
            f'_course_judge.check("{name}")  # public and hidden tests, in the judge'))
    assert checked == set(tests), f"checks missing from the student notebook: {sorted(set(tests) - checked)}"
    cells.append(nbformat.v4.new_code_cell(CLOSE))
    for cell in cells:
        cell.pop("id", None)  # nbformat 4.4 has no cell ids (new_code_cell draws random ones)
    nb.cells = cells
    first = first_answer_cell(nb)
    nb.metadata["course_nbval"] = {
        "env": KERNEL_ENV, "unset": KERNEL_UNSET, "needs_mirror": True,
        # nbval numbers code cells only ("Cell N")
        "first_answer_cell": sum(c.cell_type == "code" for c in nb.cells[:first])}
    return nb


def judge_tests(source) -> dict:
    """{question: {"points", "cases": [{"code", "hidden", "points", "message"}]}} from a source's test cells."""
    tests = {}
    for q in notebooks.graded_structure(source):
        cases = [{"code": release.strip_test_config(source.cells[i].source), "points": 1.0, "message": "",
                  "hidden": notebooks.is_hidden_test(source.cells[i].source)} for i in q["tests"]]
        tests[q["name"]] = {"points": float(len(cases)), "cases": cases}
    return tests


def write_graded_copies(root, out, run_id: str) -> list[pathlib.Path]:
    """Write every notebook's graded copy to out/<name>/<name>.ipynb once per test run; their paths.

    Both pytest-xdist workers collect: the first one (under a lock) empties `out` (its kernels' working
    folders start empty, as a fresh tmp folder did) and writes the copies, the other finds `run_id`
    (the run's id, shared by the workers) in out/.run and leaves them. The text is deterministic.
    """
    root = notebooks.repo_root(root)
    names = [p.stem for p in notebooks.source_notebooks(root)]
    paths = [out / name / f"{name}.ipynb" for name in names]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = out / ".run"
        if stamp.exists() and stamp.read_text() == run_id and all(p.exists() for p in paths):
            return paths
        texts = [json.dumps(graded_copy(*(nbformat.read(root / "notebooks" / kind / f"{name}.ipynb", as_version=4)
                                          for kind in ("student", "source"))), indent=1, ensure_ascii=False) + "\n"
                 for name in names]
        for old in out.iterdir():
            if old.is_dir():
                shutil.rmtree(old)
        for path, text in zip(paths, texts):
            path.parent.mkdir()
            path.write_text(text, encoding="utf-8")
        stamp.write_text(run_id)
    return paths
