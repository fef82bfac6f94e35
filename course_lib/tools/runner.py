"""The course's main job: execute every notebook in order, headless, and write a run report.

`course run` (see README). Writes `<out>/executed/*.ipynb`, `<out>/report.json` and
`<out>/report.md` with each notebook's runtime, each check's pass/fail and its metrics.
On the console: each notebook's progress (`Progress`), its kernel's stderr passed through
(less TensorFlow's one harmless ERROR line, `quiet.is_harmless_log`), and a final table
(`format_table`); kernels start with `quiet.kernel_env()`/`kernel_config()`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import platform
import sys
import threading
import time

from course_lib import config, quiet, report
from course_lib.tools import notebooks, outdir, stops

__all__ = ["run_course", "NoNotebookError", "select", "run_notebook", "first_error", "code_cells", "format_elapsed",
           "progress_line", "format_table", "Progress", "render_markdown"]


def run_course(out="runs/latest", profile: str | None = None, *, only=None,
               timeout: int = 1800, root=None, budget: str | None = None) -> dict:
    """Execute the source notebooks and write the report; returns the report dict.

    `out` must be new, empty or a folder `course run` wrote (`outdir`); the new run replaces it
    when done. SIGTERM or SIGINT stops the run: its kernel is shut down, the report of what ran
    is written, and the report's `stopped` names the signal.
    """
    if profile:
        os.environ["COURSE_PROFILE"] = profile
    if budget:
        os.environ["COURSE_BUDGET"] = budget
    config.get_budget()  # an unknown COURSE_BUDGET or COURSE_PROFILE stops here, before any kernel starts
    _check_profile()
    os.environ.setdefault("COURSE_PROFILE", "fast")
    paths = select(root, only)
    out = outdir.check(out, "run")
    with outdir.staged(out, "run") as stage, stops.on_signals() as stop:
        results = _run_all(paths, stage, timeout, stop)
        print(format_table(results), flush=True)
        rep = _report(results, stop.name)
        _write_atomic(stage / "report.json", json.dumps(rep, indent=2))
        _write_atomic(stage / "report.md", render_markdown(rep))
    print(f"[course] report: {out / 'report.md'} and {out / 'report.json'}")
    if rep["stopped"]:
        print(f"[course] stopped by {rep['stopped']}: {len(results)} of {len(paths)} notebook(s) ran "
              "(the last one only in part); the report lists them.", file=sys.stderr, flush=True)
    return rep


def _check_profile() -> None:
    """An unknown COURSE_PROFILE stops the run before any kernel starts (a kernel would fail in every cell)."""
    if os.environ.get("COURSE_PROFILE"):
        try:
            config.get_profile()
        except ValueError as exc:
            raise ValueError(f"{exc} Fix: `course run --profile fast` (or full), or unset COURSE_PROFILE "
                             "to let the hardware choose.") from None


def _run_all(paths: list, stage: pathlib.Path, timeout: int, stop) -> list[dict]:
    results = []
    for path in paths:
        if stop.name:
            break
        print(f"[course] running {path.name} ...", flush=True)
        result = run_notebook(path, stage, timeout, stop=stop)
        print(f"[course] {path.name}: {result['status']} in {result['seconds']:.0f} s, "
              f"{result['cells_run']}/{result['cells_total']} cells, "
              f"{sum(c['passed'] for c in result['checks'])}/{len(result['checks'])} checks passed"
              + _unjudged_note(result), flush=True)
        if result.get("first_error"):
            print(f"[course] {path.stem}: first error: {result['first_error']}", file=sys.stderr, flush=True)
        results.append(result)
    return results


def _report(results: list[dict], stopped: str | None) -> dict:
    return {"created": datetime.datetime.now().isoformat(timespec="seconds"),
            "profile": os.environ["COURSE_PROFILE"], "budget": config.get_budget().name,
            "mirror": os.environ.get("COURSE_MIRROR") or None,
            "python": platform.python_version(), "notebooks": results,
            "total_seconds": round(sum(r["seconds"] for r in results), 1), "stopped": stopped,
            "ok": not stopped and all(r["status"] == "passed" for r in results)}


class NoNotebookError(FileNotFoundError):
    """`course run` found no notebook to run: no notebooks folder, or `only` matched none."""


def select(root=None, only=None) -> list[pathlib.Path]:
    """The source notebooks to run; a one-line NoNotebookError when `only` matches none of them."""
    if isinstance(only, str):
        only = [only]  # one name, not its letters
    try:
        every = notebooks.source_notebooks(root)
    except FileNotFoundError as exc:
        raise NoNotebookError(str(exc)) from None
    if only is not None and not list(only):
        raise NoNotebookError(
            f"No notebooks matched: --only was given no name (Received: only={list(only)!r}), and it "
            f"runs only the notebooks it names. Notebooks: {', '.join(p.stem for p in every)}. Fix: pass "
            "part of one of these names (--only 00), or leave --only out to run every notebook.")
    paths = notebooks.source_notebooks(root, only)
    if not every:
        raise NoNotebookError(f"No notebooks to run: {notebooks.repo_root(root) / 'notebooks' / 'source'} "
                              "has no NN_name.ipynb files. Fix: run this from a complete course checkout.")
    if not paths:
        wanted = " or ".join(repr(o) for o in only)
        raise NoNotebookError(
            f"No notebooks matched: no notebook name contains {wanted}. Notebooks: "
            f"{', '.join(p.stem for p in every)}. Fix: pass part of one of these names to "
            "--only (only=...), or leave it out to run every notebook.")
    return paths


def run_notebook(path: pathlib.Path, out: pathlib.Path, timeout: int, *, stop=None) -> dict:
    """Execute one notebook (errors recorded, not fatal) and collect its checks and metrics."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for folder in ("executed", "metrics"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    metrics_file = out / "metrics" / f"{path.stem}.jsonl"
    metrics_file.unlink(missing_ok=True)
    start = time.perf_counter()
    shown = Progress(path.stem, code_cells(nb))
    crashed = _execute(nb, path, timeout=timeout, shown=shown, stop=stop or stops.Stop(), metrics_file=metrics_file)
    seconds = time.perf_counter() - start
    nbformat.write(nb, out / "executed" / path.name)
    records = report.read(metrics_file)
    judged = not config.get_budget().reduced
    checks = _test_checks(nb, judged) + [
        {"name": r["name"], "kind": "claim", "passed": r["passed"], "judged": r.get("judged", True)}
        for r in records if r["type"] == "claim"]
    unjudged = {c["cell"] for c in checks if not c["judged"] and "cell" in c}
    errors = [i for i, c in enumerate(nb.cells)
              if c.cell_type == "code" and notebooks.cell_failed(c) and i not in unjudged]
    failed = crashed or errors or not all(c["passed"] for c in checks if c["judged"])
    stopped = bool(crashed) and crashed.startswith("stopped by")
    return {"notebook": path.stem, "status": "stopped" if stopped else "failed" if failed else "passed",
            "seconds": round(seconds, 1), "cells_run": shown.done, "cells_total": shown.total,
            "error_cells": errors, "crash": crashed,
            "first_error": first_error(nb, errors) or crashed,
            "checks": checks,
            "metrics": {r["name"]: r["value"] for r in records if r["type"] == "metric"}}


def _execute(nb, path: pathlib.Path, *, timeout: int, shown, stop, metrics_file: pathlib.Path) -> str | None:
    """Run the notebook's kernel, its metrics to `metrics_file`; None, or why it stopped early (crash, timeout or a signal)."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}},
                            config=quiet.kernel_config(), on_cell_executed=shown.cell_done)
    client.on_notebook_start = stop.kernel_hook(client)
    crashed = None
    try:
        with shown.running() as kernel_stderr:
            client.execute(env={**quiet.kernel_env(), report.METRICS_ENV: str(metrics_file)}, stderr=kernel_stderr)
    except Exception as exc:  # noqa: BLE001 - a dead kernel or timeout is a failed notebook
        crashed = f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        stop.reinstall()
    if stop.name or getattr(client, "_async_cleanup_kernel_future", None) is not None:
        stop.name = stop.name or "a signal"  # nbclient's own handler caught it while the kernel started
        return f"stopped by {stop.name} after {shown.done} of {shown.total} cells"
    return crashed


def first_error(nb, cells: list) -> str | None:
    """`cell N: ExceptionName: first line of its message` for the first failed cell (None: none failed)."""
    for i in cells:
        err = next((o for o in nb.cells[i].get("outputs", []) if o.get("output_type") == "error"), None)
        if err:
            value = (err.get("evalue") or "").strip()
            return f"cell {i}: {err.get('ename', 'Error')}{': ' + value[:600] if value else ''}"
    return None


def _test_checks(nb, judged: bool = True) -> list[dict]:
    """One check per test cell; under a reduced budget an AssertionError there is recorded, not judged."""
    checks = []
    for q in notebooks.graded_structure(nb):
        for k, idx in enumerate(q["tests"], 1):
            cell = nb.cells[idx]
            ran = cell.get("execution_count") is not None
            passed = ran and not notebooks.cell_failed(cell)
            result_only = ran and _error_name(cell) == "AssertionError"
            checks.append({"name": f"{q['name']}.test{k}", "kind": "test", "cell": idx, "passed": passed,
                           "judged": judged or passed or not result_only})
    return checks


def _unjudged_note(result: dict) -> str:
    n = sum(not c["passed"] and not c.get("judged", True) for c in result["checks"])
    return f" ({n} failed but not judged: reduced budget)" if n else ""


def _error_name(cell) -> str | None:
    return next((o.get("ename") for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)


def code_cells(nb) -> int:
    """How many cells nbclient will execute: code cells with source, not tagged skip-execution."""
    return sum(c.cell_type == "code" and bool(c.source.strip())
               and "skip-execution" not in c.metadata.get("tags", []) for c in nb.cells)


def format_elapsed(seconds: float) -> str:
    """Elapsed time as `45s`, `1m12s` or `1h02m`."""
    s = int(seconds)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(name: str, done: int, total: int, seconds: float) -> str:
    """One progress line: `[course] 02_feature_extraction  cell 14/38  1m12s`."""
    return f"[course] {name}  cell {done}/{total}  {format_elapsed(seconds)}"


def format_table(results: list[dict]) -> str:
    """The final console table: notebook, status, cells run, checks passed, minutes."""
    rows = [(r["notebook"], r["status"], f"{r.get('cells_run', '?')}/{r.get('cells_total', '?')}",
             f"{sum(c['passed'] for c in r['checks'])}/{len(r['checks'])}", f"{r['seconds'] / 60:.1f}")
            for r in results]
    ok = all(r["status"] == "passed" for r in results)
    rows.append(("total", "passed" if ok else "FAILED", "", "", f"{sum(r['seconds'] for r in results) / 60:.1f}"))
    head = ("notebook", "status", "cells", "checks", "minutes")
    widths = [max(len(row[i]) for row in rows + [head]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i < 4 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*row).rstrip() for row in [head] + rows)


class Progress:
    """One notebook's progress on the console, and its kernel's stderr passed through (less `quiet.is_harmless_log`).

    On a terminal one line is rewritten in place (every second and after each cell); in a
    log (not a terminal) a line is printed at most every `every` seconds, so CI logs stay short.
    """

    def __init__(self, name: str, total: int, *, out=None, err=None, every: float = 30.0,
                 clock=time.monotonic):
        self.name, self.total, self.done, self.every, self.clock = name, total, 0, every, clock
        self.out = sys.stdout if out is None else out
        self.err = sys.stderr if err is None else err
        self.tty = _isatty(self.out)
        self.start = self.last = clock()
        self._shown = False
        self._lock = threading.Lock()

    def cell_done(self, **_hook_kwargs) -> None:
        """nbclient's `on_cell_executed` hook: one more cell done."""
        self.done += 1
        self.show()

    def show(self, force: bool = False) -> None:
        """Print the progress line when due (always on a terminal)."""
        with self._lock:
            now = self.clock()
            line = progress_line(self.name, self.done, self.total, now - self.start)
            if self.tty:
                self.out.write("\r\033[K" + line)
                self._shown = True
            elif force or now - self.last >= self.every:
                self.out.write(line + "\n")
            else:
                return
            self.last = now
            self.out.flush()

    def relay(self, text: str) -> None:
        """Write a line of the kernel's stderr as it came, the progress line moved below it."""
        with self._lock:
            self._clear()
            self.err.write(text)
            self.err.flush()
        if self.tty:
            self.show()

    def _clear(self) -> None:
        if self._shown:
            self.out.write("\r\033[K")
            self.out.flush()
            self._shown = False

    @contextlib.contextmanager
    def running(self, tick: float = 1.0):
        """For the block: a ticker thread and a pipe for the kernel's stderr; yields the pipe's fd."""
        read_fd, write_fd = os.pipe()
        stop = threading.Event()

        def pump():
            with os.fdopen(read_fd, "rb") as fh:
                for raw in fh:
                    line = raw.decode("utf-8", "replace")
                    if not quiet.is_harmless_log(line):
                        self.relay(line)

        def ticker():
            while not stop.wait(tick):
                self.show()

        threads = [threading.Thread(target=f, daemon=True) for f in (pump, ticker)]
        for t in threads:
            t.start()
        try:
            yield write_fd
        finally:
            os.close(write_fd)  # the kernel has exited: the pump reads to the end of its output
            stop.set()
            for t in threads:
                t.join(timeout=5)
            with self._lock:
                self._clear()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def render_markdown(rep: dict) -> str:
    """The run report as Markdown."""
    lines = [f"# Course run report ({rep['created']})", "",
             f"Profile: **{rep['profile']}**; data: {rep['mirror'] or 'online'}; "
             f"Python {rep['python']}; total {rep['total_seconds']:.0f} s; "
             f"overall: **{'passed' if rep['ok'] else 'FAILED'}**", "",
             *([f"**Stopped by {rep['stopped']}**: only the notebooks below ran (the last one in part).", ""]
               if rep.get("stopped") else []),
             "| notebook | status | seconds | checks passed |", "| --- | --- | ---: | ---: |"]
    for r in rep["notebooks"]:
        passed = sum(c["passed"] for c in r["checks"])
        lines.append(f"| {r['notebook']} | {r['status']} | {r['seconds']:.0f} | {passed}/{len(r['checks'])} |")
    for r in rep["notebooks"]:
        lines += ["", f"## {r['notebook']}", ""]
        if r["crash"] or r["error_cells"]:
            lines.append(f"Errors: {r['crash'] or 'cells ' + ', '.join(map(str, r['error_cells']))}")
        lines += [f"- {'PASS' if c['passed'] else 'FAIL' if c.get('judged', True) else 'not judged'} "
                  f"{c['kind']} `{c['name']}`" for c in r["checks"]]
        lines += [f"- metric `{k}` = {v:.4g}" if isinstance(v, float) else f"- metric `{k}` = {v}"
                  for k, v in r["metrics"].items()]
    return "\n".join(lines) + "\n"


def _write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
