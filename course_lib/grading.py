"""Instructor tools, grading side: autograder zips and grading submissions, with otter-grader.

Taught in `00_setup`, whose exercises are the first graded ones. Builds on `release`: each
autograder zip is `otter assign`'s output for a source (`release.assign`). Commands (see
`register_cli`):

- `course autograder`: one `NN_name-autograder.zip` per notebook (hidden tests included).
- `course grade SUBMISSIONS`: grade a folder of submitted notebooks without Docker, one
  subprocess with a timeout per submission, into `grades.csv` and `grades.md`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile

from course_lib import notebooks, release

AUTOGRADER_DIR = "build/autograder"


# ---------------------------------------------------------------- autograder zips

def build_autograder(out=None, root=None, only=None) -> list[pathlib.Path]:
    """Write `<out>/NN_name-autograder.zip` (default: build/autograder) for every source notebook."""
    root = notebooks.repo_root(root)
    out = pathlib.Path(out) if out else root / AUTOGRADER_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="course_autograder_") as tmp:
        for src in notebooks.source_notebooks(root):
            if only and not any(o in src.stem for o in only):
                continue
            dist = release.assign(src, pathlib.Path(tmp) / src.stem)
            zips = sorted((dist / "autograder").glob("*.zip"))
            dest = out / f"{src.stem}-autograder.zip"
            shutil.copyfile(zips[-1], dest)
            written.append(dest)
    return written


# ---------------------------------------------------------------- grading

def assignment_name(path) -> str | None:
    """The `metadata.otter.assignment_name` of a submitted notebook (None if absent/unreadable)."""
    try:
        meta = json.loads(pathlib.Path(path).read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return None
    return (meta.get("otter") or {}).get("assignment_name")


def grade_one(notebook, autograder_zip, timeout: float = 1200, log=None) -> dict:
    """Grade one submission in a subprocess (killed after `timeout` s); returns scores and status."""
    with tempfile.TemporaryDirectory(prefix="course_grade_") as tmp:
        result_file = pathlib.Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "course_lib.grading", "--worker",
               str(pathlib.Path(notebook).resolve()), str(pathlib.Path(autograder_zip).resolve()),
               str(result_file)]
        env = {**os.environ, "COURSE_QUIET": "1", "MPLBACKEND": "Agg"}
        with open(log or os.devnull, "w", encoding="utf-8") as out:
            proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the worker and its kernel
                proc.wait()
                return {"status": f"timeout after {timeout:.0f} s", "scores": {}}
        if not result_file.is_file():
            return {"status": f"grader crashed (exit code {proc.returncode})", "scores": {}}
        return json.loads(result_file.read_text())


def _worker(notebook: str, autograder_zip: str, result_file: str) -> int:
    """Subprocess body of `grade_one`: run otter's local grader, write the scores as JSON."""
    from otter.api import grade_submission

    try:
        res = grade_submission(notebook, autograder_zip, quiet=True)
    except Exception as exc:  # noqa: BLE001 - reported in the table, not raised
        out = {"status": f"error: {type(exc).__name__}: {str(exc)[:200]}", "scores": {}}
    else:
        error = res.catastrophic_error
        out = {"status": f"error: {error}"[:200] if error else "graded",
               "scores": {name: [r.score, r.possible] for name, r in sorted(res.results.items())}}
    pathlib.Path(result_file).write_text(json.dumps(out))
    return 0


def grade_folder(submissions, out="build/grades", autograder=None, timeout: float = 1200,
                 root=None, jobs: int = 1) -> list[dict]:
    """Grade every notebook under `submissions`; writes grades.csv and grades.md; returns the rows."""
    from concurrent.futures import ThreadPoolExecutor

    root = notebooks.repo_root(root)
    submissions, out = pathlib.Path(submissions), pathlib.Path(out)
    autograder = pathlib.Path(autograder) if autograder else root / AUTOGRADER_DIR
    (out / "logs").mkdir(parents=True, exist_ok=True)
    paths = sorted(p for p in submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    rows = [_match(p, submissions, autograder, root) for p in paths]

    def grade(row):
        if row.pop("zip", None):
            print(f"[course] grading {row['submission']} ({row['assignment']}) ...", flush=True)
            log = out / "logs" / (row["submission"].replace("/", "__") + ".log")
            row.update(grade_one(submissions / row["submission"], _zip(autograder, row["assignment"]),
                                 timeout, log))
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(grade, rows))
    write_tables(rows, out)
    return rows


def _zip(autograder: pathlib.Path, name: str) -> pathlib.Path:
    return autograder / f"{name}-autograder.zip"


def _match(path: pathlib.Path, submissions: pathlib.Path, autograder: pathlib.Path, root) -> dict:
    """A table row for one submission; `zip` is set when it can be graded (builds a missing zip)."""
    name = assignment_name(path)
    row = {"submission": path.relative_to(submissions).as_posix(), "assignment": name or "", "scores": {}}
    sources = {p.stem for p in notebooks.source_notebooks(root)}
    if name in sources and not _zip(autograder, name).is_file():
        build_autograder(autograder, root, only=[name])
    if not name:
        row["status"] = "no metadata.otter.assignment_name: not a course notebook"
    elif not _zip(autograder, name).is_file():
        row["status"] = f"unknown assignment {name!r}"
    else:
        row.update(status="pending", zip=True)
    return row


def _questions(rows) -> list[str]:
    names = {q for r in rows for q in r["scores"]}
    return sorted(names, key=lambda q: (len(q), q))


def _totals(row) -> tuple[float, float]:
    return (sum(s for s, _ in row["scores"].values()), sum(p for _, p in row["scores"].values()))


def write_tables(rows: list[dict], out: pathlib.Path) -> None:
    """Write the per-exercise scores as `grades.csv` (one row per submission) and `grades.md`."""
    questions = _questions(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["submission", "assignment", "status", "score", "possible", *questions])
    for r in rows:
        total, possible = _totals(r)
        writer.writerow([r["submission"], r["assignment"], r["status"], _num(total), _num(possible),
                         *(_num(r["scores"][q][0]) if q in r["scores"] else "" for q in questions)])
    (out / "grades.csv").write_text(buf.getvalue(), encoding="utf-8")
    (out / "grades.md").write_text(render_markdown(rows), encoding="utf-8")


def _num(x) -> str:
    return f"{x:g}"


def render_markdown(rows: list[dict]) -> str:
    """One Markdown table per assignment: a row per submission, a column per exercise."""
    lines = ["# Grades", ""]
    for name in sorted({r["assignment"] for r in rows}):
        group = [r for r in rows if r["assignment"] == name]
        questions = _questions(group)
        possible = {q: next(r["scores"][q][1] for r in group if q in r["scores"]) for q in questions}
        lines += [f"## {name or '(not a course notebook)'}", "",
                  "| submission | " + " | ".join(f"{q} (/{_num(possible[q])})" for q in questions)
                  + (" | " if questions else "") + "total | status |",
                  "| --- | " + "---: | " * len(questions) + "---: | --- |"]
        for r in group:
            total, out_of = _totals(r)
            cells = [_num(r["scores"][q][0]) if q in r["scores"] else "" for q in questions]
            lines.append(f"| {r['submission']} | " + "".join(c + " | " for c in cells)
                         + f"{_num(total)}/{_num(out_of)} | {r['status']} |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- command line

def register_cli(sub, commands: dict) -> None:
    """Add `course autograder` and `course grade` to the `course` command."""
    a = sub.add_parser("autograder", help="build one otter autograder zip per notebook")
    a.add_argument("--out", default=None, help=f"folder (default: {AUTOGRADER_DIR} in the checkout)")
    g = sub.add_parser("grade", help="grade a folder of submitted notebooks (no Docker)")
    g.add_argument("submissions", help="folder with the submitted .ipynb files (searched recursively)")
    g.add_argument("--out", default="build/grades", help="where grades.csv, grades.md and logs/ go")
    g.add_argument("--autograder", default=None,
                   help=f"folder of NN_name-autograder.zip (default: {AUTOGRADER_DIR}; missing zips are built)")
    g.add_argument("--timeout", type=float, default=1200, help="seconds per submission")
    g.add_argument("--jobs", type=int, default=1, help="submissions graded at the same time")
    commands.update(autograder=_cli_autograder, grade=_cli_grade)


def _cli_autograder(args) -> int:
    for path in build_autograder(args.out):
        print(f"written   {path}")
    return 0


def _cli_grade(args) -> int:
    rows = grade_folder(args.submissions, args.out, args.autograder, args.timeout, jobs=args.jobs)
    print(render_markdown(rows))
    print(f"[course] wrote {pathlib.Path(args.out) / 'grades.csv'} and {pathlib.Path(args.out) / 'grades.md'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        sys.exit(_worker(*sys.argv[2:]))
    sys.exit("usage: python -m course_lib.grading --worker NOTEBOOK AUTOGRADER_ZIP RESULT_JSON")
