"""The course's main job: execute every notebook in order, headless, and write a run report.

`course run` (see README). Writes `<out>/executed/*.ipynb`, `<out>/report.json` and
`<out>/report.md` with each notebook's runtime, each check's pass/fail and its metrics.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import time

from course_lib import notebooks, report


def run_course(out="runs/latest", profile: str | None = None, only=None,
               timeout: int = 1800, root=None) -> dict:
    """Execute the source notebooks and write the report; returns the report dict."""
    out = pathlib.Path(out).resolve()
    if profile:
        os.environ["COURSE_PROFILE"] = profile
    os.environ.setdefault("COURSE_PROFILE", "fast")
    paths = select(root, only)
    results = []
    for path in paths:
        print(f"[course] running {path.name} ...", flush=True)
        result = run_notebook(path, out, timeout)
        print(f"[course] {path.name}: {result['status']} in {result['seconds']:.0f} s, "
              f"{sum(c['passed'] for c in result['checks'])}/{len(result['checks'])} checks passed",
              flush=True)
        results.append(result)
    rep = {"created": datetime.datetime.now().isoformat(timespec="seconds"),
           "profile": os.environ["COURSE_PROFILE"], "mirror": os.environ.get("COURSE_MIRROR") or None,
           "python": platform.python_version(), "notebooks": results,
           "total_seconds": round(sum(r["seconds"] for r in results), 1),
           "ok": all(r["status"] == "passed" for r in results)}
    _write_atomic(out / "report.json", json.dumps(rep, indent=2))
    _write_atomic(out / "report.md", render_markdown(rep))
    print(f"[course] report: {out / 'report.md'} and {out / 'report.json'}")
    return rep


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


def run_notebook(path: pathlib.Path, out: pathlib.Path, timeout: int) -> dict:
    """Execute one notebook (errors recorded, not fatal) and collect its checks and metrics."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    for folder in ("executed", "metrics"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    metrics_file = out / "metrics" / f"{path.stem}.jsonl"
    metrics_file.unlink(missing_ok=True)
    os.environ["COURSE_METRICS_FILE"] = str(metrics_file)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
        crashed = None
    except Exception as exc:  # noqa: BLE001 - a dead kernel or timeout is a failed notebook
        crashed = f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        os.environ.pop("COURSE_METRICS_FILE", None)
    seconds = time.perf_counter() - start
    nbformat.write(nb, out / "executed" / path.name)
    records = report.read(metrics_file)
    checks = _test_checks(nb) + [{"name": r["name"], "kind": "claim", "passed": r["passed"]}
                                 for r in records if r["type"] == "claim"]
    errors = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and notebooks.cell_failed(c)]
    failed = crashed or errors or not all(c["passed"] for c in checks)
    return {"notebook": path.stem, "status": "failed" if failed else "passed",
            "seconds": round(seconds, 1), "error_cells": errors, "crash": crashed,
            "checks": checks,
            "metrics": {r["name"]: r["value"] for r in records if r["type"] == "metric"}}


def _test_checks(nb) -> list[dict]:
    checks = []
    for q in notebooks.graded_structure(nb):
        for k, idx in enumerate(q["tests"], 1):
            cell = nb.cells[idx]
            ran = cell.get("execution_count") is not None
            checks.append({"name": f"{q['name']}.test{k}", "kind": "test",
                           "passed": ran and not notebooks.cell_failed(cell)})
    return checks


def render_markdown(rep: dict) -> str:
    """The run report as Markdown."""
    lines = [f"# Course run report ({rep['created']})", "",
             f"Profile: **{rep['profile']}**; data: {rep['mirror'] or 'online'}; "
             f"Python {rep['python']}; total {rep['total_seconds']:.0f} s; "
             f"overall: **{'passed' if rep['ok'] else 'FAILED'}**", "",
             "| notebook | status | seconds | checks passed |", "| --- | --- | ---: | ---: |"]
    for r in rep["notebooks"]:
        passed = sum(c["passed"] for c in r["checks"])
        lines.append(f"| {r['notebook']} | {r['status']} | {r['seconds']:.0f} | {passed}/{len(r['checks'])} |")
    for r in rep["notebooks"]:
        lines += ["", f"## {r['notebook']}", ""]
        if r["crash"] or r["error_cells"]:
            lines.append(f"Errors: {r['crash'] or 'cells ' + ', '.join(map(str, r['error_cells']))}")
        lines += [f"- {'PASS' if c['passed'] else 'FAIL'} {c['kind']} `{c['name']}`" for c in r["checks"]]
        lines += [f"- metric `{k}` = {v:.4g}" if isinstance(v, float) else f"- metric `{k}` = {v}"
                  for k, v in r["metrics"].items()]
    return "\n".join(lines) + "\n"


def _write_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
