"""The grader's link to a judge process (`judge`): start it, have it keep context and run an exercise's tests.

Used by `submission` (`course grade`, in the README's instructor section) and, as `InKernel`, by
CI's graded copies of the notebooks (`tests/graded_notebooks.py`), where the notebook's own kernel
serves its answers. The messages are JSON lines over the judge's stdin and stdout.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading

__all__ = ["START_TIMEOUT", "MEMORY_BYTES", "JudgeError", "Judge", "InKernel"]

START_TIMEOUT = 300  # a busy machine (the judge imports TensorFlow later, for the first test that may use it)
MEMORY_BYTES = 8 << 30  # the judge's address space: the solutions' tests peak near 4.3 GiB of it (03)


class JudgeError(RuntimeError):
    """The judge process failed (did not start, died, answered out of protocol): the machine's fault."""


class Judge:
    """The grader's handle on a judge process for one submission."""

    def __init__(self, tests: dict, workdir):
        # on the CPU, as the sandboxed kernel is (no GPU device there): a test that predicts again gets its numbers
        env = {**os.environ, "PYTHONPATH": _course_lib_parent(), "TF_CPP_MIN_LOG_LEVEL": "2", "COURSE_QUIET": "1",
               "CUDA_VISIBLE_DEVICES": "-1"}
        self.cwd = tempfile.mkdtemp(prefix="course_judge_cwd_")
        self.proc = subprocess.Popen([sys.executable, "-m", "course_lib.tools.judge"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                                     cwd=self.cwd)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._send({"tests": tests, "workdir": str(workdir), "memory_bytes": MEMORY_BYTES})
        self.ready = False

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _send(self, message: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise JudgeError(f"the judge process is gone ({type(exc).__name__})") from None

    def _receive(self, timeout: float) -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        if line is None:
            raise JudgeError(f"the judge process ended (exit code {self.proc.poll()})")
        return json.loads(line)

    def _exchange(self, message: dict, until: str, serve, timeout: float):
        if not self.ready:
            first = self._receive(START_TIMEOUT)
            if "ready" not in first:
                raise JudgeError(str(first.get("machine_error", "the judge did not start"))[:300])
            self.ready = True
        self._send(message)
        while True:
            reply = self._receive(timeout)
            if until in reply:
                return reply[until]
            self._send(serve(reply))

    def question(self, name: str, serve, timeout: float, context=()) -> list[dict]:
        """The verdicts of `name`'s cases; `serve(request) -> reply` answers the judge's fetches and calls.
        The names in `context` are read from the snapshots `keep` took, not from the kernel."""
        return self._exchange({"question": name, "context": sorted(context)}, "results", serve, timeout)

    def keep(self, names, serve, timeout: float) -> None:
        """Have the judge take these context names from the kernel now (a course cell just set them)."""
        self._exchange({"keep": sorted(names)}, "kept", serve, timeout)

    def close(self) -> None:
        """Stop the judge process."""
        import shutil

        try:
            self.proc.kill()
            self.proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        shutil.rmtree(self.cwd, ignore_errors=True)


class InKernel:
    """A judge for a notebook's own kernel, which serves the answers itself (CI's graded copies of the notebooks).

    `InKernel(tests)` starts the judge; `check("q1")` has it run q1's tests, public and hidden, on this
    kernel's answers, the way `course grade` does, and raises AssertionError naming each failed test.
    The judge and the answers' folder go when the kernel stops (or at `close()`).
    """

    def __init__(self, tests: dict):
        import atexit

        self.folder = tempfile.mkdtemp(prefix="course_judge_answers_")
        self.judge, self.count = Judge(tests, self.folder), 0
        atexit.register(self.close)

    def close(self) -> None:
        """Stop the judge and remove the answers' folder."""
        import shutil

        self.judge.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _serve(self, request: dict) -> dict:
        from course_lib.tools import answers

        self.count += 1
        prefix = f"answer-{self.count}"
        try:
            if "fetch" in request:
                answers.export(str(request["fetch"]), self.folder, prefix)
            else:
                answers.call(str(request["call"]), str(request["request"]), self.folder, prefix)
        except Exception as exc:  # noqa: BLE001 - the notebook's failure, reported by the test that asked
            return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        return {"file": f"{prefix}.json"}

    def check(self, question: str, timeout: float = 1800) -> None:
        """Run `question`'s tests in the judge; AssertionError listing the failed ones."""
        import shutil

        try:
            results = self.judge.question(question, self._serve, timeout)
        finally:
            for name in os.listdir(self.folder):
                path = os.path.join(self.folder, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        failed = [f"test {k}: {r.get('machine') or r.get('message')}" for k, r in enumerate(results, 1)
                  if not r.get("passed")]
        assert not failed, f"the judge failed {question}:\n" + "\n".join(failed)


def _course_lib_parent() -> str:
    import importlib.util

    return os.path.dirname(os.path.dirname(os.path.abspath(importlib.util.find_spec("course_lib").origin)))
