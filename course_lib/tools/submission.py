"""Grade one submitted notebook: run it cell by cell in a sandboxed kernel, test each exercise as it comes.

Used by `grading` (`course grade`, in the README's instructor section). The
grader, not the submission, drives the kernel (`sandbox` builds it):

- every code cell runs with a time limit; a cell that hangs, or a kernel that dies, ends the
  run there, and the exercises already tested keep their points;
- at a `grader.check("qN")` cell, `judge` (a process that never runs student code) runs that
  exercise's tests, public and hidden, which come from the autograder zip and never enter the
  sandbox; the kernel only hands over the answers the tests read, as data (`answers`, `wire`),
  and runs the submitted functions a test calls, on the judge's arguments. So callbacks, AST
  transformers, rebound names or patched modules in the kernel run no test. What the tests
  read from the course's own cells (`context`) the judge takes right after such an unedited
  cell ran, so a later student cell that rebinds or changes it is not seen;
- only the grader's own checks of the machine make the whole submission an "error", never a
  score: the kernel or the judge does not start, the course library does not load in the kernel,
  an unedited set-up cell fails before any student code ran, or a course resource is missing in
  the judge. Whatever the submission raises (whatever its class is called) is the submission's.
"""

from __future__ import annotations

import os
import pathlib
import re
import secrets
import shutil
import tempfile
import time
import zipfile

from course_lib.tools import kernel

__all__ = ["CHECK_CELL", "JUDGE_TIMEOUT", "load_tests", "doctest_to_python", "question_of_cells", "cell_check",
           "grade"]

CHECK_CELL = re.compile(r"""^\s*grader\.check\(\s*["']([\w-]+)["']\s*\)\s*$""")
JUDGE_TIMEOUT = 900  # the longest the judge may work between two messages


def load_tests(autograder_zip) -> dict[str, dict]:
    """{question: {"points", "cases": [{"code", "hidden", "points", "message"}]}} from an autograder zip."""
    tests = {}
    with zipfile.ZipFile(autograder_zip) as zf:
        for name in sorted(n for n in zf.namelist() if re.fullmatch(r"tests/[\w-]+\.py", n)):
            space: dict = {}
            exec(compile(zf.read(name).decode("utf-8"), name, "exec"), space)  # our own build's output
            test = space["test"]
            cases = [{"code": doctest_to_python(c["code"]), "hidden": bool(c.get("hidden")),
                      "points": float(c.get("points") or 0), "message": c.get("failure_message") or ""}
                     for suite in test["suites"] for c in suite["cases"]]
            tests[test["name"]] = {"points": float(test.get("points") or sum(c["points"] for c in cases)),
                                   "cases": cases}
    return tests


def doctest_to_python(code: str) -> str:
    """The Python source of an OK-format test case (`>>> ` and `... ` prompts, no expected output)."""
    lines = []
    for line in code.splitlines():
        if line.startswith((">>> ", "... ")) or line in (">>>", "..."):
            lines.append(line[4:])
        elif line.strip():
            raise ValueError(f"A test case expects printed output, which the course's grader does not "
                             f"compare: {line!r}. Write the check as an assert.")
    return "\n".join(lines) + "\n"


def question_of_cells(cells) -> list[str | None]:
    """For each cell, the exercise it belongs to: the next `grader.check` cell's question."""
    owner, current = [None] * len(cells), None
    for i in range(len(cells) - 1, -1, -1):
        match = cell_check(cells[i])
        current = match or current
        owner[i] = current
    return owner


def cell_check(cell) -> str | None:
    """The question a `grader.check("q")` code cell checks, else None."""
    if cell.get("cell_type") != "code":
        return None
    match = CHECK_CELL.match(_source(cell).strip())
    return match.group(1) if match else None


def _source(cell) -> str:
    """A cell's source as text, whatever a hand-edited notebook holds there (a list, None)."""
    source = cell.get("source") if isinstance(cell, dict) else None
    if isinstance(source, list):
        return "".join(s for s in source if isinstance(s, str))
    return source if isinstance(source, str) else ""


def grade(notebook, tests: dict, *, template=None, context=None, cell_timeout: float = 600,
          total_timeout: float = 3600, sandboxed: bool = True, mirror=None, stop_after_setup: bool = False) -> dict:
    """Run and test one submission; returns {"status", "scores", "notes", "feedback"} (see module doc).

    `context`: {question: names its tests read from the course's cells} (`context.plan`); the judge
    takes each right after an unedited template cell sets it, and the tests read that snapshot.
    """
    import nbformat

    try:
        nb = nbformat.read(str(notebook), as_version=4)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not raised
        return _result(f"error: the notebook cannot be read ({type(exc).__name__}: {str(exc)[:120]})", tests)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="course_grade_"))
    try:
        (workdir / "work").mkdir()
        shutil.copyfile(notebook, workdir / "work" / pathlib.Path(notebook).name)
        return _Run(nb, tests, template=template, context=context, workdir=workdir / "work",
                    cell_timeout=cell_timeout,
                    total_timeout=total_timeout,
                    sandboxed=sandboxed, mirror=mirror).go(stop_after_setup)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _result(status, tests, *, scores=None, notes=None, feedback=None) -> dict:
    return {"status": status, "possible": {q: t["points"] for q, t in tests.items()},
            "scores": scores or {}, "notes": notes or {}, "feedback": feedback or {}}


class _Run:
    """The state of one grading run (see `grade`)."""

    def __init__(self, nb, tests, *, template, context, workdir, cell_timeout, total_timeout, sandboxed, mirror):
        self.nb, self.tests, self.workdir = nb, tests, workdir
        # no template, no course cell known: nothing is kept, every name is read from the kernel
        self.context = {q: set(names) for q, names in (context or {}).items() if q in tests} if template else {}
        self.watched = set().union(*self.context.values())
        self.cell_timeout, self.total_timeout = cell_timeout, total_timeout
        self.deadline = time.monotonic() + total_timeout
        self.sandboxed, self.mirror = sandboxed, mirror
        self.unedited = {_source(c).strip() for c in (template.cells if template else [])
                         if c.cell_type == "code" and "otter_answer_cell" not in c.metadata.get("tags", [])}
        self.places: dict[str, list[int]] = {}  # an unedited cell's places in the template, in order
        for k, c in enumerate(template.cells if template else []):
            self.places.setdefault(_source(c).strip(), []).append(k)
        self.place = -1  # the template place of the last course cell that ran in order
        self.first_answer = next((k for k, c in enumerate(template.cells if template else [])
                                  if "otter_answer_cell" in c.metadata.get("tags", [])), -1)
        self.scores, self.notes, self.feedback = {}, {}, {q: [] for q in tests}
        self.answered = False  # an answer cell (one the student wrote in) has run
        self.alias = f"_course_answers_{secrets.token_hex(6)}"  # the kernel's name for `answers`
        self.requests = 0

    def go(self, stop_after_setup: bool) -> dict:
        from course_lib.tools import judge_link

        # the judge starts while the kernel starts and runs the first cells
        self.judge = None if stop_after_setup else judge_link.Judge(self.tests, self.workdir)
        try:
            try:
                # CPU time: every core busy for the whole time limit, and a minute to start
                cpu = int((self.deadline - time.monotonic()) * (os.cpu_count() or 1)) + 60
                self.kernel = kernel.Kernel(self.workdir, sandboxed=self.sandboxed, mirror=self.mirror, cpu_seconds=cpu)
            except Exception as exc:  # noqa: BLE001 - the grading machine's fault, not the student's
                return _result(f"error: the kernel did not start ({type(exc).__name__}: {str(exc)[:200]})",
                               self.tests)
            try:
                return self._cells(stop_after_setup)
            except _Stopped as stop:
                where_, question, why, timeout = stop.args
                return self._stopped(where_, question, why=why, timeout=timeout)
            except (_MachineError, judge_link.JudgeError) as exc:
                return _result(f"error: {exc}. Check the grading machine (`course grade` runs a preflight first).",
                               self.tests)
            finally:
                self.kernel.close()
        finally:
            if self.judge is not None:
                self.judge.close()

    def _cells(self, stop_after_setup: bool) -> dict:
        start = self.kernel.run(f"import course_lib.tools.answers as {self.alias}", kernel.START_TIMEOUT)
        if start["status"] != "ok":
            return _result(f"error: the course library does not load in the grading kernel "
                           f"({start['ename']}: {start['evalue'][:200]})", self.tests)
        owner = question_of_cells(self.nb.cells)
        for i, cell in enumerate(self.nb.cells):
            question = cell_check(cell)
            if question:
                if question in self.tests and question not in self.scores:
                    self._test(question, i)
                continue
            source = _source(cell)
            if cell.get("cell_type") != "code" or not source.strip():
                continue
            template_cell = source.strip() in self.unedited
            left = self.deadline - time.monotonic()
            if left <= 0:
                return self._stopped(f"cell {i}", owner[i], why="timeout", timeout=self.total_timeout, whole=True)
            timeout = min(self.cell_timeout, left)
            out = self.kernel.run(source, timeout)
            if out["status"] in ("timeout", "dead"):
                return self._stopped(f"cell {i}", owner[i], why=out["status"], timeout=timeout)
            if out["status"] == "error":
                if template_cell and not self.answered:  # only course code ran so far: the machine's fault
                    return _result(f"error: cell {i} (course code, not the student's) raised "
                                   f"{out['ename']}: {out['evalue'][:200]}. Check the grading machine "
                                   "(`course grade` runs a preflight first).", self.tests)
                where = owner[i] if owner[i] in self.feedback and not template_cell else "other cells"
                self.feedback.setdefault(where, []).append(f"cell {i} raised {out['ename'][:80]}: "
                                                           f"{out['evalue'][:200]}")
            self.answered |= not template_cell
            if template_cell and self._in_order(source) and out["status"] == "ok" and self.judge is not None:
                self._keep(source, f"cell {i}", owner[i])  # a course cell run again or moved up sets no context
            if stop_after_setup and "cl.setup(" in source:
                return _result("setup ok", self.tests)
        for question in self.tests:  # exercises whose check cell was deleted: tested at the end
            if question not in self.scores:
                self._test(question, len(self.nb.cells))
        limits = self.kernel.limits_hit()  # a limit reached: the submission's result, said in its feedback
        if limits:
            self.feedback.setdefault("other cells", []).extend(limits)
        return _result("graded", self.tests, scores=self.scores, notes=self.notes, feedback=self.feedback)

    def _in_order(self, source: str) -> bool:
        """Whether this course cell comes after the last one that ran, in the template's order (once each)."""
        later = [k for k in self.places.get(source.strip(), []) if k > self.place]
        if later:
            self.place = later[0]
        return bool(later)

    def _keep(self, source: str, where_: str, question: str | None) -> None:
        """Have the judge take the context names this course cell sets, as it left them."""
        from course_lib.tools import context

        names = context.written_names(source) & self.watched
        if not names:
            return
        if self.answered and self.place < self.first_answer:  # `grades.md` counts it as set before any answer
            self.feedback.setdefault("other cells", []).append(
                f"the course's {where_} set {', '.join(sorted(names))} after cells you added or edited had run; "
                "the tests read what it set then")
        limit = min(JUDGE_TIMEOUT, max(self.deadline - time.monotonic(), 60))
        try:
            self.judge.keep(names, lambda request: self._serve(request, where_, question), limit)
        except TimeoutError:
            raise _Stopped(where_, question, "timeout", limit) from None
        finally:
            self._clean()

    def _test(self, question: str, index: int) -> None:
        """Have the judge run one exercise's tests (raises _Stopped when the kernel hangs or dies meanwhile)."""
        where_ = f"the tests of {question} (cell {index})"
        # the judge's own work (loading a model, a reference backbone) is not the submission's time: its
        # own limit; the kernel's work for it (answers, calls) has the cell limit (`_serve`)
        limit = min(JUDGE_TIMEOUT, max(self.deadline - time.monotonic(), 60))
        try:
            results = self.judge.question(question, lambda request: self._serve(request, where_, question), limit,
                                          context=self.context.get(question, ()))
        except TimeoutError:
            raise _Stopped(where_, question, "timeout", limit) from None
        finally:
            self._clean()
        score = 0.0
        for k, (case, result) in enumerate(zip(self.tests[question]["cases"], results), 1):
            if result.get("machine"):
                raise _MachineError(f"test {k} of {question} raised {result['machine']}")
            if result.get("passed"):
                score += case["points"]
            elif not case["hidden"]:
                detail = str(result.get("message") or "")[:200]
                self.feedback[question].append(f"public test {k} failed: {case['message'] or detail}"
                                               + (f" ({detail})" if case["message"] and detail else ""))
            else:
                self.feedback[question].append(f"hidden test {k} failed")
        self.scores[question] = (score, self.tests[question]["points"])

    def _serve(self, request: dict, where_: str, question: str) -> dict:
        """Answer one judge request in the kernel: write an answer (`fetch`) or call a function (`call`)."""
        self.requests += 1
        prefix = f"answer-{self.requests}"
        folder = str(self.workdir.resolve())
        if "fetch" in request:
            code = f"{self.alias}.export({str(request['fetch'])!r}, {folder!r}, {prefix!r})"
        elif "call" in request:
            code = f"{self.alias}.call({str(request['call'])!r}, {str(request['request'])!r}, {folder!r}, {prefix!r})"
        else:
            return {"error": "unknown request"}
        limit = min(self.cell_timeout, max(self.deadline - time.monotonic(), 1))
        out = self.kernel.run(code, limit)
        if out["status"] in ("timeout", "dead"):
            raise _Stopped(where_, question, out["status"], limit)
        if out["status"] != "ok" or out["ename"]:
            return {"error": f"{out['ename'][:80]}: {out['evalue'][:200]}"}
        return {"file": f"{prefix}.json"}

    def _clean(self) -> None:
        """Remove the answer files of the last exercise from the submission's folder."""
        for path in self.workdir.iterdir():
            if path.name.startswith(("answer-", "judge-")):
                try:
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                except OSError:
                    pass

    def _stopped(self, where_: str, question: str | None, *, why: str, timeout: float, whole: bool = False) -> dict:
        limits = self.kernel.limits_hit()  # a limit reached: the submission's result, said as such
        what = ("the notebook's time limit ran out" if whole else f"timed out after {timeout:.0f} s"
                if why == "timeout" else "killed the kernel: " + "; ".join(limits) if limits
                else "killed the kernel (crash or out of memory)")
        if limits and (whole or why == "timeout"):
            self.feedback.setdefault("other cells", []).extend(limits)
        where = f"exercise {question}" if question else "after the last exercise"
        for q in self.tests:
            if q not in self.scores:
                self.scores[q] = (0.0, self.tests[q]["points"])
                self.notes.setdefault(q, f"not reached: {where_} ({where}) {what}")
        if question in self.tests:
            self.notes[question] = f"{where_} {what}"
            self.feedback[question].append(self.notes[question])
        return _result(f"graded; stopped at {where_} ({where}): {what}", self.tests, scores=self.scores,
                       notes=self.notes, feedback=self.feedback)


class _MachineError(Exception):
    """A resource the course needs failed during a test: the grading machine's fault."""


class _Stopped(Exception):
    """A test hung or killed the kernel: (where, question, "timeout"|"dead", seconds)."""
