"""Before `course grade` grades anything: can this machine run each assignment it is about to grade?

Used by `grading` (`course grade`, in the README's instructor section). `run` returns the
problems found, each with how to fix it; `course grade` grades nothing while there is one.
It checks the settings, the sandbox, the data (a mirror: a sandboxed submission has no
network), then runs each assignment's untouched student notebook up to its set-up cell in
the sandbox, as a submission would run (that imports TensorFlow there; when it fails, the sandbox
check imports it again on its own, to say what to fix); with `reference=True` it also grades
the solutions, which must score full marks.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

from course_lib import config, errors
from course_lib.tools import notebooks

__all__ = ["run", "settings", "resources", "sandbox", "assignment", "SETUP_FAILED"]

SETUP_FAILED = "an untouched notebook does not get through its set-up here"


def run(assignments, autograder, *, root=None, sandboxed: bool = True, reference: bool = False) -> list[str]:
    """The problems that stop grading of `assignments` here (empty when it can go ahead)."""
    problems = settings() + resources(assignments, sandboxed)
    if sandboxed and not problems:
        problems += sandbox(modules="course_lib")  # starts, and reads what it needs; TensorFlow comes next
    if problems:
        return problems
    for name in assignments:
        problems += assignment(name, pathlib.Path(autograder), root=root, sandboxed=sandboxed, reference=reference)
    if sandboxed and any(SETUP_FAILED in p for p in problems):  # the libraries, imported alone there, may say why
        problems = sandbox() + problems
    return problems


def settings() -> list[str]:
    """COURSE_PROFILE and COURSE_BUDGET name known values."""
    found = []
    for check in (config.get_profile, config.get_budget):
        try:
            check()
        except ValueError as exc:
            found.append(f"{exc} Fix: set it to an allowed value, or unset it, before grading.")
    return found


def resources(assignments, sandboxed: bool) -> list[str]:
    """Weights and data are reachable: a complete mirror, or (without the sandbox) the network."""
    from course_lib import mirror

    root = config.mirror_dir()
    if root is None:
        if sandboxed:
            return ["COURSE_MIRROR is not set. Submissions run in a sandbox without network, so weights and "
                    "data must come from a mirror. Fix: set COURSE_MIRROR to a course mirror (README: Offline "
                    "route; `course mirror build DEST` makes one on a machine with internet)."]
        if not errors.network_available("storage.googleapis.com"):
            return ["Neither COURSE_MIRROR nor the network is available, so the notebooks cannot load their "
                    "weights and data. Fix: set COURSE_MIRROR to a course mirror (README: Offline route)."]
        return []
    try:
        report = mirror.check(root)
    except errors.MissingResourceError as exc:
        return [f"{exc}"]
    return [f"{name}: the mirror {root} lacks {', '.join(report['missing_by_notebook'][name])}, which this "
            "notebook loads. Fix: complete the mirror (`course mirror check` lists what is missing)."
            for name in assignments if report["missing_by_notebook"].get(name)]


def sandbox(modules: str = "course_lib, keras, tensorflow") -> list[str]:
    """The sandbox starts, its user can read what it needs, and `modules` import inside it."""
    from course_lib.tools import sandbox as sb

    with tempfile.TemporaryDirectory(prefix="course_preflight_") as tmp:
        try:
            with sb.Sandbox(tmp) as box:
                cmd = box.command([sys.executable, "-c", f"import {modules}"])
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                if box.as_root:  # the submission runs as another user: what it reads must be open to all
                    python = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)}
                    paths = sb.readonly_paths(box.mirror)  # the Python environment walked only when it failed
                    closed = sb.unreadable(paths if proc.returncode else [p for p in paths if p not in python])
                    if closed:
                        return [f"Grading as root runs each submission as an unprivileged user, who cannot read "
                                f"{'; '.join(closed)}. Fix: `chmod -R o+rX` on the folders named (the Python "
                                "environment, the course checkout, the mirror), or grade as an ordinary user."]
        except sb.SandboxUnavailable as exc:
            return [str(exc)]
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        return [f"The grading sandbox does not work here: `import {modules}` failed in it "
                f"({tail[:300]}). Fix: run `course grade` from the course's environment; if bubblewrap "
                "cannot create namespaces on this machine, grade where it can (or --no-sandbox for code you trust)."]
    return []


def assignment(name: str, autograder: pathlib.Path, *, root=None, sandboxed: bool = True,
               reference: bool = False) -> list[str]:
    """An untouched notebook of `name` gets through its set-up cell; with `reference`, the solutions score full marks."""
    import nbformat

    from course_lib.tools import classroom, context, release, submission

    root = notebooks.repo_root(root)
    student_path = notebooks.student_notebook(root, name)
    if not student_path.is_file():
        return [f"{name}: no student notebook at {student_path}. Fix: run `course student` in the course checkout."]
    tests = submission.load_tests(autograder / f"{name}-autograder.zip")
    student = nbformat.read(student_path, as_version=4)
    setup = submission.grade(student_path, tests, template=student, sandboxed=sandboxed, stop_after_setup=True)
    if setup["status"] != "setup ok":
        return [f"{name}: {SETUP_FAILED}: {setup['status']}"]
    if not reference:
        return []
    source = nbformat.read(root / "notebooks" / "source" / f"{name}.ipynb", as_version=4)
    with tempfile.TemporaryDirectory(prefix="course_reference_") as tmp:
        path = pathlib.Path(tmp) / f"{name}.ipynb"
        solved = release.fill_solutions(student, source)  # answering the keys of a private build (`private`)
        nbformat.write(classroom.answer_with(solved, classroom.zip_keys(tests)), path)
        result = submission.grade(path, tests, template=student, sandboxed=sandboxed,
                                  context=context.of_assignment(root, name))
    short = {q: s for q, (s, p) in result["scores"].items() if s < p}
    if result["status"] != "graded" or short or len(result["scores"]) != len(tests):
        return [f"{name}: the solutions do not score full marks here (status: {result['status']}; short: "
                f"{short or 'none'}; notes: {result['notes'] or 'none'}). A grade from this machine would be wrong."]
    return []
