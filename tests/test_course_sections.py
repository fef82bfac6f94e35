"""Tests for benchmarks/course_sections.py: memory sampling, targets table, notebook timing."""

import importlib.util
import pathlib
import subprocess
import sys

import nbformat
import pytest

from course_lib.tools import notebooks

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sections():
    """The benchmark module, imported from its file."""
    spec = importlib.util.spec_from_file_location("course_sections", ROOT / "benchmarks" / "course_sections.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_memory_monitor_sees_a_child_that_allocates_300_mb(sections):
    code = "import time; b = bytearray(300 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)"
    with sections.MemoryMonitor(interval=0.05) as mon:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert mon.children_peak > 290 * 1024**2, mon.children_peak
    assert mon.peak >= mon.children_peak + 10 * 1024**2  # the tree also counts this process
    assert sections.rusage_peaks()["children"] > 290 * 1024**2


def test_target_rows_pass_and_miss_at_the_limits(sections):
    rows = [{"notebook": "00_a", "seconds": 180.0}, {"notebook": "01_b", "seconds": 181.0},
            {"notebook": "03_fine_tuning", "seconds": 480.0}]
    result = sections.target_rows(rows, 4 * 1024**3 + 1)
    assert [r[3] for r in result] == ["PASS", "PASS", "MISS", "MISS"]
    assert result[1][0] == "notebook 03_fine_tuning" and result[1][1] == "<= 480 s"  # its own target
    assert result[2][0] == "slowest other notebook (01_b)" and result[2][2] == "181 s"
    n_all = len(notebooks.source_notebooks())
    assert result[0][0] == f"3 of {n_all} notebooks only, fast profile"  # never called the whole course
    assert sections.target_rows([{"notebook": "03_fine_tuning", "seconds": 481.0}], 1)[1][3] == "MISS"
    many = sections.target_rows([{"notebook": "00_a", "seconds": 110.0}] * 10, 4 * 1024**3)
    assert [r[3] for r in many] == ["MISS", "PASS", "PASS"]  # 10 x 110 s > 16 min
    assert sections.target_rows(None, 10)[0][0] == "peak RSS, benchmark process tree"


def test_table_aligns_columns(sections):
    text = sections.table(["a", "bb"], [("xxx", 1), ("y", 22)])
    assert text.splitlines() == ["a    bb", "---  --", "xxx  1", "y    22"]


HOLD_300_MB = "import time\nx = bytearray(300 * 1024 * 1024)\nx[::4096] = b'1' * len(x[::4096])\ntime.sleep(600)"


def _wait_for_rss(pid: int, nbytes: int, timeout: float = 30.0) -> bool:
    import time

    import psutil

    deadline = time.time() + timeout
    while time.time() < deadline:
        if psutil.Process(pid).memory_info().rss >= nbytes:
            return True
        time.sleep(0.1)
    return False


def test_notebook_runtimes_times_each_notebook_and_its_kernel_memory(sections, tmp_path, monkeypatch,
                                                                      isolated_cache):
    source = tmp_path / "course" / "notebooks" / "source"
    source.mkdir(parents=True)
    for name, code in (("00_ok", "import time\nx = bytearray(200 * 1024 * 1024)\nx[::4096] = b'1' * len(x[::4096])\n"
                                 "time.sleep(0.5)  # the monitor samples every 0.2 s"),
                       ("01_broken", "raise RuntimeError('boom')")):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, source / f"{name}.ipynb")
    monkeypatch.chdir(tmp_path / "course")
    monkeypatch.delenv("COURSE_METRICS_FILE", raising=False)
    monkeypatch.setenv("COURSE_PROFILE", "fast")  # restored after the test (the section sets both)
    monkeypatch.setenv("CI", "true")
    older = subprocess.Popen([sys.executable, "-c", HOLD_300_MB])  # an older child: must not count
    try:
        assert older.stdout is None and _wait_for_rss(older.pid, 300 * 1024**2)
        rows = sections.notebook_runtimes(out=tmp_path / "out", timeout=120)
    finally:
        older.kill()
        older.wait()
    assert [(r["notebook"], r["status"]) for r in rows] == [("00_ok", "passed"), ("01_broken", "failed")]
    assert all(r["seconds"] > 0 and r["cpu_seconds"] > 0 for r in rows)
    assert rows[0]["kernel_peak_rss"] > 200 * 1024**2 > rows[1]["kernel_peak_rss"]
    assert (tmp_path / "out" / "executed" / "00_ok.ipynb").is_file()
