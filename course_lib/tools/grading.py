"""Instructor tools, grading side: autograder zips (otter-grader) and grading a folder of submissions.

Taught in `00_setup`, whose exercises are the first graded ones. Builds on `release`: each
autograder zip is `otter assign`'s output for a source (`release.assign`). Commands (declared
in `cli`):

- `course autograder`: one `NN_name-autograder.zip` per notebook (hidden tests included; the
  questionnaire's keys only in hidden tests, `classroom`; `--private DIR` merges an instructor's
  own keys and hidden tests, `private`).
- `course grade SUBMISSIONS`: a `preflight` first (grades nothing and exits 2 when this
  machine cannot grade), then each submission through `submission.grade` (a sandboxed
  kernel, per-cell time limits, tests run by the grader), into `grades.csv`, `grades.md`
  and `feedback/<submission>.md` (`feedback_names`: unique and short; the tables say whose).
  A submission the grader could not judge is an "error", never a score, and the command
  then exits 1. One file never stops the class: only regular files are read (`files_in`:
  links, FIFOs and devices are skipped with the reason), and any error reading or grading a
  file is that file's row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import stat
import tempfile

from course_lib.tools import notebooks, release

__all__ = ["AUTOGRADER_DIR", "build_autograder", "read_submission", "assignment_name", "unreadable", "other_assignment",
           "GradingError", "grade_one", "files_in", "submissions_in", "grade_folder", "write_tables", "render_markdown",
           "feedback_markdown", "feedback_names", "write_feedback"]

AUTOGRADER_DIR = "build/autograder"


# ---------------------------------------------------------------- autograder zips

def build_autograder(out=None, root=None, only=None, private=None) -> list[pathlib.Path]:
    """Write `<out>/NN_name-autograder.zip` (default: build/autograder) for every source notebook.

    `private`: a folder of NN_name.yaml files (`course_lib.tools.private`), checked before anything is built.
    """
    import nbformat

    from course_lib.tools import classroom
    from course_lib.tools import private as private_folder

    root = notebooks.repo_root(root)
    extra = private_folder.load(private, root) if private is not None else {}
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
            classroom.class_zip(dest, nbformat.read(src, as_version=4), src.stem, extra.get(src.stem))
            written.append(dest)
    return written


# ---------------------------------------------------------------- grading

def read_submission(path) -> str:
    """A submitted file's text: a regular file only (a FIFO, device or link raises OSError, never blocks)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return f.read().decode("utf-8")


def _json(path):
    return json.loads(read_submission(path))


def assignment_name(path) -> str | None:
    """The `metadata.otter.assignment_name` of a submitted notebook (None if absent/unreadable)."""
    try:
        data = _json(path)
    except (OSError, ValueError, RecursionError):
        return None
    meta = data.get("metadata") if isinstance(data, dict) else None
    otter = meta.get("otter") if isinstance(meta, dict) else None
    name = otter.get("assignment_name") if isinstance(otter, dict) else None
    return name if isinstance(name, str) else None


def unreadable(path) -> str | None:
    """Why a submitted .ipynb cannot be read as a notebook (None: it is valid JSON)."""
    try:
        _json(path)
    except UnicodeDecodeError:
        return "not a notebook: the file is not UTF-8 text. Fix: ask for the notebook again (File > Download .ipynb)."
    except ValueError as exc:
        return (f"not valid JSON ({str(exc)[:200]}): the notebook file is damaged or cut short, not graded. "
                "Fix: ask for the notebook again (File > Download .ipynb), then grade it.")
    except RecursionError:
        return ("not a notebook: its JSON nests deeper than any notebook does, not graded. "
                "Fix: ask for the notebook again (File > Download .ipynb).")
    except OSError as exc:
        return f"the file cannot be read ({type(exc).__name__}: {str(exc)[:200]}), not graded."
    return None


def other_assignment(path, name: str | None, sources: set) -> str | None:
    """Why a submission whose metadata names `name` is another course notebook (None: it is `name`)."""
    data = _json(path)
    cells = data.get("cells", []) if isinstance(data, dict) else []
    code = [_source_text(c.get("source")) for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]
    called = next((m.group(1) for src in code for m in [re.search(r"cl\.setup\(\s*['\"](\w+)['\"]", src)] if m), None)
    if not name or called not in sources or called == name:
        return None
    return (f"its metadata names the assignment {name}, but it is {called} (its setup cell calls "
            f"cl.setup({called!r})): grading it with {name}'s tests would score 0, so it was not graded. "
            f"Fix: set metadata.otter.assignment_name to {called!r}, or ask for the {name} notebook.")


def _source_text(source) -> str:
    """A cell's source as text, whatever a hand-edited file holds there (a string, a list, anything else)."""
    if isinstance(source, str):
        return source
    return "".join(s for s in source if isinstance(s, str)) if isinstance(source, list) else ""


class GradingError(RuntimeError):
    """`course grade` cannot grade: a missing or empty folder, or a failed preflight."""


def grade_one(notebook, autograder_zip, *, template=None, context=None, timeout: float = 3600,
              cell_timeout: float = 600, sandboxed: bool = True) -> dict:
    """Grade one submission with `submission.grade` (sandboxed kernel, time limits); returns its result."""
    from course_lib.tools import submission

    return submission.grade(notebook, submission.load_tests(autograder_zip), template=template, context=context,
                            cell_timeout=cell_timeout, total_timeout=timeout, sandboxed=sandboxed)


def files_in(folder) -> list[tuple[pathlib.Path, str | None]]:
    """Every entry under `folder` but folders, as (path, why it is not read: None for a regular file).

    Links are never followed (to a file or a folder: another submission, or outside the folder).
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]  # a linked folder: not entered
        found += [(pathlib.Path(dirpath, d), _KINDS["link"]) for d in links]
        dirnames[:] = sorted(d for d in dirnames if d != ".ipynb_checkpoints" and d not in links)
        for name in sorted(filenames):
            path = pathlib.Path(dirpath, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError as exc:
                found.append((path, f"cannot be read ({type(exc).__name__})"))
                continue
            kind = next((k for k, test in _TESTS.items() if test(mode)), None)
            found.append((path, None if kind == "file" else _KINDS.get(kind, _KINDS["other"])))
    return sorted(found)


_TESTS = {"file": stat.S_ISREG, "link": stat.S_ISLNK, "fifo": stat.S_ISFIFO, "device": lambda m: stat.S_ISCHR(m)
          or stat.S_ISBLK(m), "socket": stat.S_ISSOCK}
_KINDS = {k: f"{what}, not a regular file: not read. Fix: put the notebook file itself in the folder."
          for k, what in {"link": "a symbolic link", "fifo": "a FIFO (named pipe)", "device": "a device",
                          "socket": "a socket", "other": "not a regular file"}.items()}


def submissions_in(folder) -> list[pathlib.Path]:
    """The notebooks (regular files) under `folder`; a GradingError when it does not exist or holds none."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise GradingError(f"No submissions folder: {folder} {'is a file' if folder.exists() else 'does not exist'}. "
                           "Fix: pass the folder that holds the submitted .ipynb files.")
    paths = [p for p, why in files_in(folder) if why is None and p.suffix == ".ipynb"]
    if not paths:
        others = sorted(p.name for p, _ in files_in(folder))[:5]
        raise GradingError(f"No notebooks to grade: {folder} holds no .ipynb file"
                           + (f" (it holds {', '.join(others)}{' ...' if len(others) == 5 else ''})" if others else
                              " (it is empty)") + ". Fix: pass the folder of submitted notebooks.")
    return paths


def grade_folder(submissions, out="build/grades", *, autograder=None, timeout: float = 3600, root=None,
                 jobs: int = 1, cell_timeout: float = 600, sandboxed: bool = True,
                 reference: bool = False) -> list[dict]:
    """Preflight, then grade every notebook under `submissions`; writes the gradebook and feedback."""
    from concurrent.futures import ThreadPoolExecutor

    from course_lib.tools import context, preflight

    root = notebooks.repo_root(root)
    submissions, out = pathlib.Path(submissions), pathlib.Path(out)
    autograder = pathlib.Path(autograder) if autograder else root / AUTOGRADER_DIR
    submissions_in(submissions)  # a GradingError when there is nothing to grade
    rows = []
    for path, why in files_in(submissions):  # one odd file is its own row: the others are graded
        name = path.relative_to(submissions).as_posix()
        if why:
            rows.append({"submission": name, "assignment": "", "scores": {}, "status": f"skipped: {why}"})
        elif path.suffix != ".ipynb":
            rows.append({"submission": name, "assignment": "", "scores": {}, "status": "skipped: not a notebook"})
        else:
            try:
                rows.append(_match(path, submissions, autograder, root))
            except Exception as exc:  # noqa: BLE001 - one odd notebook must not cost the gradebook
                rows.append({"submission": name, "assignment": "", "scores": {}, "status":
                             f"error: the grader failed on this file ({type(exc).__name__}: {str(exc)[:200]})"})
    names = sorted({r["assignment"] for r in rows if r.get("zip")})
    problems = preflight.run(names, autograder, root=root, sandboxed=sandboxed, reference=reference)
    if problems:
        raise GradingError("Preflight failed: this machine cannot grade these submissions, so nothing was "
                           "graded.\n" + "\n".join(f"- {p}" for p in problems))
    templates = {n: _template(root, n) for n in names}
    contexts = {n: context.of_assignment(root, n) for n in names}
    late = {n: context.of_assignment(root, n, read=context.after_answers) or {} for n in names}

    def grade(row):
        if row.pop("zip", None):
            print(f"[course] grading {row['submission']} ({row['assignment']}) ...", flush=True)
            try:
                row.update(grade_one(submissions / row["submission"], _zip(autograder, row["assignment"]),
                                     template=templates[row["assignment"]],
                                     context=contexts[row["assignment"]], timeout=timeout,
                                     cell_timeout=cell_timeout, sandboxed=sandboxed))
            except Exception as exc:  # noqa: BLE001 - one odd notebook must not cost the gradebook
                row.update(status=f"error: the grader failed on this notebook ({type(exc).__name__}: "
                                  f"{str(exc)[:200]})", scores={})
        return row

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(grade, rows))
    out.mkdir(parents=True, exist_ok=True)
    write_feedback(rows, out / "feedback")  # first: a file it could not write is said in the tables
    write_tables(rows, out, late=late)
    return rows


def _template(root, name: str):
    """The student notebook a submission of `name` started from, self-paced or class (None when the checkout lacks it)."""
    import nbformat

    from course_lib.tools import classroom

    path = notebooks.student_notebook(root, name)
    return classroom.template(nbformat.read(path, as_version=4), name) if path.is_file() else None


def _zip(autograder: pathlib.Path, name: str) -> pathlib.Path:
    return autograder / f"{name}-autograder.zip"


def _match(path: pathlib.Path, submissions: pathlib.Path, autograder: pathlib.Path, root) -> dict:
    """A table row for one submission; `zip` is set when it can be graded (builds a missing zip)."""
    name = assignment_name(path)
    row = {"submission": path.relative_to(submissions).as_posix(), "assignment": name or "", "scores": {}}
    sources = {p.stem for p in notebooks.source_notebooks(root)}
    problem = unreadable(path) or other_assignment(path, name, sources)
    if problem:
        row.update(status=f"error: {problem}")
        return row
    if name in sources and not _zip(autograder, name).is_file():
        build_autograder(autograder, root, only=[name])
    if not name:
        row["status"] = "skipped: not a course notebook (no metadata.otter.assignment_name)"
    elif name not in sources or not _zip(autograder, name).is_file():  # never a path the student chose
        row.update(assignment="", status=f"skipped: unknown assignment {name[:80]!r}")
    else:
        row.update(status="pending", zip=True)
    return row


def _questions(rows) -> list[str]:
    names = {q for r in rows for q in (r.get("possible") or r["scores"])}
    return sorted(names, key=lambda q: (len(q), q))


def _totals(row) -> tuple[float | None, float]:
    """(points, possible); points is None for a submission that was not graded (an error, skipped)."""
    possible = row.get("possible") or {q: p for q, (_, p) in row["scores"].items()}
    graded = row["status"].startswith("graded")
    return (sum(s for s, _ in row["scores"].values()) if graded else None, sum(possible.values()))


def write_tables(rows: list[dict], out: pathlib.Path, *, late=None) -> None:
    """Write the per-exercise scores as `grades.csv` (one row per submission) and `grades.md`."""
    questions = _questions(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = feedback_names(rows)
    writer.writerow(["submission", "assignment", "status", "score", "possible", *questions, "feedback"])
    for r in rows:
        total, possible = _totals(r)
        writer.writerow([*map(_cell, (r["submission"], r["assignment"], r["status"])),
                         "" if total is None else _num(total), _num(possible),
                         *(_num(r["scores"][q][0]) if q in r["scores"] else "" for q in questions),
                         _cell(f"feedback/{names[r['submission']]}")])
    (out / "grades.csv").write_text(buf.getvalue(), encoding="utf-8")
    (out / "grades.md").write_text(render_markdown(rows, late=late), encoding="utf-8")


def _num(x) -> str:
    return f"{x:g}"


def _cell(text: str) -> str:
    """A text cell a spreadsheet shows as text: one that starts like a formula gets a `'` before it."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def render_markdown(rows: list[dict], *, late=None) -> str:
    """One Markdown table per assignment: a row per submission, a column per exercise (with its points); under
    it, the exercises whose tests read what a course cell measured after the submission's code ran (`late`)."""
    from course_lib.tools import context

    lines, names = ["# Grades", ""], feedback_names(rows)
    for name in sorted({r["assignment"] for r in rows}):
        group = [r for r in rows if r["assignment"] == name]
        questions = _questions(group)
        possible = {q: next((r.get("possible") or {}).get(q, r["scores"].get(q, (0, 0))[1]) for r in group
                            if q in (r.get("possible") or r["scores"])) for q in questions}
        lines += [f"## {name or '(not a course notebook)'}", "",
                  "| submission | " + " | ".join(f"{q} (/{_num(possible[q])})" for q in questions)
                  + (" | " if questions else "") + "total | status | feedback |",
                  "| --- | " + "---: | " * len(questions) + "---: | --- | --- |"]
        for r in group:
            total, out_of = _totals(r)
            cells = [_num(r["scores"][q][0]) if q in r["scores"] else "" for q in questions]
            shown = "error" if total is None and r["status"].startswith("error") else (
                "" if total is None else f"{_num(total)}/{_num(out_of)}")
            cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731 - one table cell
            lines.append(f"| {cell(r['submission'])} | " + "".join(c + " | " for c in cells)
                         + f"{shown} | {cell(r['status'])} | {cell('feedback/' + names[r['submission']])} |")
        if (late or {}).get(name):
            lines += ["", context.in_words(late[name])]
        lines.append("")
    return "\n".join(lines)


def feedback_markdown(row: dict) -> str:
    """One submission's feedback: each exercise's points and what failed (public tests only)."""
    total, possible = _totals(row)
    lines = [f"# Feedback: {row['submission']}", "", f"Assignment: {row['assignment'] or '(none)'}  ",
             f"Status: {row['status']}  ",
             f"Total: {'not graded' if total is None else _num(total)} / {_num(possible)}", ""]
    for q in _questions([row]) + (["other cells"] if (row.get("feedback") or {}).get("other cells") else []):
        score = row["scores"].get(q)
        points = (row.get("possible") or {}).get(q, score[1] if score else 0)
        lines.append(f"## {q}" if q == "other cells" else
                     f"## {q}: {'-' if score is None else _num(score[0])} / {_num(points)}")
        lines += [f"- {m}" for m in (row.get("feedback") or {}).get(q, [])] or (
            ["- all tests passed"] if score and score[0] == score[1] else [])
        lines.append("")
    return "\n".join(lines)


def feedback_names(rows: list[dict]) -> dict[str, str]:
    """{submission: its feedback file's name}: `<submission>.md` (slashes become `__`), unique and short.

    A name two submissions would share (`a/b.ipynb`, `a__b.ipynb`; or differing in case only),
    or a long one, gets a short hash of the submission's path: `a__b-1f2e3d4c.md`.
    """
    plain = {r["submission"]: re.sub(r"[^\w.-]", "_", r["submission"].replace("/", "__").removesuffix(".ipynb"))
             for r in rows}
    taken: dict[str, int] = {}
    for name in plain.values():
        taken[name.lower()] = taken.get(name.lower(), 0) + 1
    names = {}
    for sub, name in plain.items():
        unique = taken[name.lower()] == 1 and len(name) <= _NAME_MAX and not re.search(r"-[0-9a-f]{8}$", name)
        names[sub] = (name if unique else f"{name[:_NAME_MAX]}-{hashlib.sha256(sub.encode()).hexdigest()[:8]}") + ".md"
    return names


_NAME_MAX = 80


def write_feedback(rows: list[dict], folder: pathlib.Path) -> None:
    """Write each row's feedback into `<folder>/<feedback_names>`; a file it cannot write is said in its status."""
    folder.mkdir(parents=True, exist_ok=True)
    names = feedback_names(rows)
    for row in rows:
        row["feedback_file"] = f"{folder.name}/{names[row['submission']]}"
        try:
            (folder / names[row["submission"]]).write_text(feedback_markdown(row), encoding="utf-8")
        except (OSError, ValueError) as exc:
            row["status"] += f"; its feedback file was not written ({type(exc).__name__}: {str(exc)[:120]})"
