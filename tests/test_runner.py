"""The course's main job on a tiny notebook: runtime, checks (tests and claims), metrics, report files."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

from course_lib.tools import cli, runner


def _tiny_notebook(path, good=True):
    nb = new_notebook(cells=[
        new_markdown_cell("# Tiny"),
        new_code_cell("import course_lib as cl\ncfg = cl.setup('99_tiny', silent=True)"),
        new_raw_cell("# BEGIN QUESTION\nname: q1\npoints: 1"),
        new_code_cell("x = 2 * 21  # SOLUTION" if good else "x = 41"),
        new_raw_cell("# BEGIN TESTS"),
        new_code_cell('assert x == 42, "x should be 42"'),
        new_raw_cell("# END TESTS"),
        new_raw_cell("# END QUESTION"),
        new_code_cell("cl.report.metric('answer', x)\ncl.report.claim('answer is even', x % 2 == 0)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_run_report_records_checks_metrics_and_runtime(tmp_path, isolated_cache):
    _tiny_notebook(tmp_path / "course" / "notebooks" / "source" / "99_tiny.ipynb")
    rep = runner.run_course(tmp_path / "out", "fast", root=tmp_path / "course")
    (nb,) = rep["notebooks"]
    assert nb["status"] == "passed" and rep["ok"] and nb["seconds"] > 0
    assert {c["name"]: c["passed"] for c in nb["checks"]} == {
        "q1.test1": True, "99_tiny.answer is even": True}
    assert nb["metrics"] == {"99_tiny.answer": 42.0}
    assert json.loads((tmp_path / "out" / "report.json").read_text())["ok"] is True
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| 99_tiny | passed |" in md and "`99_tiny.answer` = 42" in md
    assert (tmp_path / "out" / "executed" / "99_tiny.ipynb").is_file()


def test_failing_check_fails_the_run_but_later_cells_still_report(tmp_path, isolated_cache, monkeypatch):
    _tiny_notebook(tmp_path / "course" / "notebooks" / "source" / "99_tiny.ipynb", good=False)
    monkeypatch.chdir(tmp_path / "course")
    assert cli.main(["run", "--out", str(tmp_path / "out"), "--profile", "fast"]) == 1
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    (nb,) = rep["notebooks"]
    checks = {c["name"]: c["passed"] for c in nb["checks"]}
    assert nb["status"] == "failed" and checks["q1.test1"] is False
    assert checks["99_tiny.answer is even"] is False and nb["metrics"]["99_tiny.answer"] == 41.0


def test_only_matching_nothing_is_one_clear_line_and_exit_code_2(tmp_path, monkeypatch, capsys):
    _tiny_notebook(tmp_path / "course" / "notebooks" / "source" / "00_setup.ipynb")
    _tiny_notebook(tmp_path / "course" / "notebooks" / "source" / "01_pretrained_backbones.ipynb")
    monkeypatch.chdir(tmp_path / "course")
    assert cli.main(["run", "--out", str(tmp_path / "out"), "--only", "nomatch"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("course run: no notebook name contains 'nomatch'. "
                                   "Notebooks: 00_setup, 01_pretrained_backbones. Fix: pass part of")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "out").exists(), "nothing ran"
    with pytest.raises(FileNotFoundError, match=r"no notebook name contains 'x' or 'y'\. Notebooks: 00_setup"):
        runner.run_course(tmp_path / "out", only=["x", "y"], root=tmp_path / "course")


def test_progress_line_and_elapsed_time_format():
    assert [runner.format_elapsed(s) for s in (0, 45.9, 72, 3599, 3720)] == [
        "0s", "45s", "1m12s", "59m59s", "1h02m"]
    assert runner.progress_line("02_feature_extraction", 14, 38, 72) == \
        "[course] 02_feature_extraction  cell 14/38  1m12s"


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Stream(list):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def write(self, text):
        self.append(text)

    def flush(self):
        pass

    def isatty(self):
        return self.tty


def test_progress_in_a_log_prints_a_line_at_most_every_30_seconds():
    clock, out, err = _Clock(), _Stream(False), _Stream(False)
    shown = runner.Progress("03_fine_tuning", 40, out=out, err=err, clock=clock)
    for _ in range(10):  # ten quick cells: no line
        clock.now += 2
        shown.cell_done(cell=None, cell_index=0, execute_reply={})
    shown.show()
    assert out == []
    clock.now = 31  # a long cell: the ticker's heartbeat prints once, then waits 30 s again
    shown.show()
    shown.show()
    clock.now += 5
    shown.cell_done()
    assert out == ["[course] 03_fine_tuning  cell 10/40  31s\n"]
    shown.relay("E0000 a real error\n")
    assert err == ["E0000 a real error\n"] and "\r" not in "".join(out)


def test_progress_on_a_terminal_rewrites_one_line_and_keeps_kernel_lines_above_it():
    clock, out, err = _Clock(), _Stream(True), _Stream(True)
    shown = runner.Progress("00_setup", 2, out=out, err=err, clock=clock)
    clock.now = 1
    shown.cell_done()
    shown.relay("E0000 a real error\n")
    clock.now = 75
    shown.cell_done()
    assert out == ["\r\033[K[course] 00_setup  cell 1/2  1s", "\r\033[K",
                   "\r\033[K[course] 00_setup  cell 1/2  1s", "\r\033[K[course] 00_setup  cell 2/2  1m15s"]
    assert err == ["E0000 a real error\n"]


def test_final_table_has_status_cells_checks_and_minutes():
    results = [{"notebook": "00_setup", "status": "passed", "cells_run": 16, "cells_total": 16,
                "seconds": 24.0, "checks": [{"passed": True}] * 9},
               {"notebook": "03_fine_tuning", "status": "failed", "cells_run": 7, "cells_total": 42,
                "seconds": 517.0, "checks": [{"passed": True}, {"passed": False}]}]
    assert runner.format_table(results).splitlines() == [
        "notebook        status  cells  checks  minutes",
        "00_setup        passed  16/16  9/9         0.4",
        "03_fine_tuning  failed  7/42   1/2         8.6",
        "total           FAILED                     9.0"]


def _sleeping_notebook(path):
    nb = new_notebook(cells=[new_code_cell("import time"), new_code_cell("time.sleep(120)"),
                             new_code_cell("print('never')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_a_folder_run_did_not_write_is_refused_and_kept(tmp_path, monkeypatch, capsys):
    _tiny_notebook(tmp_path / "course" / "notebooks" / "source" / "00_setup.ipynb")
    monkeypatch.chdir(tmp_path / "course")
    mine = tmp_path / "mine"
    (mine / "executed").mkdir(parents=True)
    (mine / "report.md").write_text("my notes")
    assert cli.main(["run", "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "holds no output that `course run` wrote" in err and "Received: --out" in err and "Fix:" in err
    assert (mine / "report.md").read_text() == "my notes" and sorted(p.name for p in mine.iterdir()) == [
        "executed", "report.md"]
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert cli.main(["run", "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "x"
    assert cli.main(["run", "--out", "/proc/course-out"]) == 2
    assert "cannot" in capsys.readouterr().err


def test_only_without_names_and_an_unknown_profile_are_refused(tmp_path, monkeypatch, capsys):
    _tiny_notebook(tmp_path / "course" / "notebooks" / "source" / "00_setup.ipynb")
    monkeypatch.chdir(tmp_path / "course")
    assert cli.main(["run", "--out", str(tmp_path / "out"), "--only"]) == 2
    assert "--only was given no name" in capsys.readouterr().err
    monkeypatch.setenv("COURSE_PROFILE", "bogus")
    assert cli.main(["run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "COURSE_PROFILE='bogus'" in err and "Fix:" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_rerun_replaces_its_own_output_and_the_first_error_is_on_the_console(tmp_path, isolated_cache,
                                                                              monkeypatch, capsys):
    _tiny_notebook(tmp_path / "course" / "notebooks" / "source" / "99_tiny.ipynb")
    monkeypatch.chdir(tmp_path / "course")
    assert cli.main(["run", "--out", str(tmp_path / "out")]) == 0
    nb = nbformat.read(tmp_path / "course" / "notebooks" / "source" / "99_tiny.ipynb", as_version=4)
    nb.cells[3].source = "raise ValueError('Image folder not found. Received: x. Fix: y.')"
    nbformat.write(nb, tmp_path / "course" / "notebooks" / "source" / "99_tiny.ipynb")
    assert cli.main(["run", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "99_tiny: first error: cell 3: ValueError: Image folder not found. Received: x. Fix: y." in err
    assert json.loads((tmp_path / "out" / "report.json").read_text())["ok"] is False
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".course-output.json", "executed", "metrics", "report.json", "report.md"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "no staging folder left"


def test_sigterm_stops_the_kernel_writes_the_report_and_exits_non_zero(tmp_path, isolated_cache, monkeypatch):
    import os
    import signal
    import threading

    for name in ("00_a", "01_b"):
        _sleeping_notebook(tmp_path / "course" / "notebooks" / "source" / f"{name}.ipynb")
    monkeypatch.chdir(tmp_path / "course")
    timer = threading.Timer(8, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        assert cli.main(["run", "--out", str(tmp_path / "out")]) == 128 + signal.SIGTERM
    finally:
        timer.cancel()
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["stopped"] == "SIGTERM" and rep["ok"] is False
    assert [(r["notebook"], r["status"]) for r in rep["notebooks"]] == [("00_a", "stopped")]
    assert "Stopped by SIGTERM" in (tmp_path / "out" / "report.md").read_text()
    import psutil

    assert not [c for c in psutil.Process().children(recursive=True) if "ipykernel" in " ".join(c.cmdline())], \
        "the kernel was shut down"
