"""Test-session defaults (the fast profile, quiet TensorFlow and progress bars) and how nbval runs a notebook.

Every notebook pytest collects through nbval (`--nbval-lax`, pyproject.toml), the suite's graded
student copies (tests/graded_notebooks.py) and a notebook passed by hand (`pytest --nbval-lax
notebooks/source/02_feature_extraction.ipynb`), is run here the same way:
- its cells are one unit on one pytest-xdist worker (one kernel), and are `slow` (not in the fast lane);
- after a cell fails, the notebook's later cells are skipped, each naming the cell that failed (they
  would run on a broken state: their errors are consequences, not news);
- a notebook whose metadata has `course_nbval` (the graded copies) gets that kernel environment, is
  skipped without a mirror (fails in CI), and a failure before its first answer cell says that the
  untouched student notebook fails there too.
The summary says how many tests did not run for want of a mirror, and how many cells after a failure.
"""

import os
import pathlib

import pytest

os.environ.setdefault("COURSE_PROFILE", "fast")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("COURSE_QUIET", "1")

NEEDS_MIRROR = "needs COURSE_MIRROR (the README's offline route)"  # as tests/conftest.py's mirror_root says
AFTER_FAILURE = "not run: an earlier cell of this notebook failed"


def _nbval_cell(item) -> bool:
    """True for a notebook cell collected by nbval."""
    return type(item).__name__ == "IPyNbCell"


def _course_meta(item) -> dict:
    """The notebook's `course_nbval` metadata (the graded copies), or {}."""
    nb = getattr(item.parent, "nb", None)
    return dict(nb.metadata.get("course_nbval", {})) if nb is not None else {}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks and -m deselects
def pytest_collection_modifyitems(items):
    """A notebook's nbval cells: one xdist group (one kernel, on one worker), marked `slow`."""
    for item in items:
        if _nbval_cell(item):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.xdist_group(pathlib.Path(str(item.fspath)).stem))


def pytest_configure(config):
    """Register the per-cell hooks as a plugin: a conftest's hooks reach only the items under its folder
    (pytest visits build/nbval/ only through tests/conftest.py's collector)."""
    config.pluginmanager.register(NotebookCells(), "course-notebook-cells")


class NotebookCells:
    """Per-cell hooks for every nbval cell (see this module's docstring)."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item):
        """Skip a cell after its notebook failed; a graded copy: skip without a mirror (CI: fail), and
        its kernel (started in its first cell's setup) gets the environment its metadata names."""
        meta = _course_meta(item) if _nbval_cell(item) else {}
        if _nbval_cell(item) and getattr(item.parent, "course_failed", None):
            pytest.skip(f"{AFTER_FAILURE} ({item.parent.course_failed})")
        mirror = os.environ.get("COURSE_MIRROR")
        if meta.get("needs_mirror") and not (mirror and pathlib.Path(mirror).is_dir()):
            (pytest.fail if os.environ.get("CI") else pytest.skip)(NEEDS_MIRROR)
        with pytest.MonkeyPatch.context() as env:
            for key, value in meta.get("env", {}).items():
                env.setenv(key, value)
            for key in meta.get("unset", []):
                env.delenv(key, raising=False)
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        """Remember a notebook's first failing cell; one before the first answer cell says so."""
        report = yield
        if _nbval_cell(item) and report.failed and not getattr(item.parent, "course_failed", None):
            item.parent.course_failed = f"{item.name} failed"
            first = _course_meta(item).get("first_answer_cell")
            if call.when == "call" and first is not None and item.cell_num < first:
                note = (f"{item.name} runs before the notebook's first answer cell (Cell {first}): the untouched "
                        "student notebook fails here too, before a learner has written anything.")
                if isinstance(report.longrepr, str):
                    report.longrepr = f"{note}\n\n{report.longrepr}"
                else:
                    report.sections.append(("untouched student notebook", note))
        return report


def _count(n: int, noun: str) -> str:
    """'1 cell', '3 cells'."""
    return f"{n} {noun}{'s' * (n != 1)}"


def pytest_terminal_summary(terminalreporter):
    """Say how many tests did not run for want of a mirror, and how many notebook cells after a failure."""
    def reason(report):
        return report.longrepr[2] if isinstance(report.longrepr, (tuple, list)) else str(report.longrepr)

    skipped = terminalreporter.stats.get("skipped", [])
    for kind in (NEEDS_MIRROR, AFTER_FAILURE):
        reports = [r for r in skipped if kind in reason(r)]
        if not reports:
            continue
        cells = [r for r in reports if "::Cell " in r.nodeid]
        where = f"{_count(len(cells), 'cell')} of {_count(len({r.nodeid.split('::')[0] for r in cells}), 'notebook')}"
        if kind == NEEDS_MIRROR:
            terminalreporter.write_line(
                f"NOT RUN: {_count(len(reports), 'test')} skipped, {where} and "
                f"{_count(len(reports) - len(cells), 'other test')}: they need COURSE_MIRROR (the README's offline "
                "route), and none is set. `./course.sh test` runs every notebook only with a mirror: export "
                "COURSE_MIRROR=/path/to/course-mirror (in CI, with CI set, these tests fail instead).", yellow=True)
        else:
            terminalreporter.write_line(
                f"NOT RUN: {where} skipped after a failing cell of their notebook (the failures above name it).",
                yellow=True)
