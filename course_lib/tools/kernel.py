"""A Jupyter kernel for one submission, in its sandbox, that runs one cell at a time with a time limit.

Used by `submission` (`course grade`, in the README's instructor section): `Kernel.run` says whether
a cell finished, raised, ran out of time, or killed the kernel (seen within a second).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import time

__all__ = ["START_TIMEOUT", "Kernel"]

START_TIMEOUT = 120


class Kernel:
    """A kernel for one submission, in a sandbox (or not), with per-call time limits."""

    def __init__(self, workdir: pathlib.Path, *, sandboxed: bool = True, mirror=None, cpu_seconds: int = 7200):
        from jupyter_client import KernelManager

        from course_lib.tools import sandbox

        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        # its own user, cgroup and sized folder (made before the kernel writes its files there)
        self.sandbox = (sandbox.Sandbox(workdir, mirror=mirror,
                                        limits=dataclasses.replace(sandbox.LIMITS, cpu_seconds=cpu_seconds))
                        if sandboxed else None)
        wrap = self.sandbox.command if sandboxed else (lambda a: a)

        class _Manager(KernelManager):
            def format_kernel_cmd(self, extra_arguments=None):
                return [a.replace("{connection_file}", self.connection_file) for a in wrap(argv)]

        env = {**os.environ, "MPLBACKEND": "Agg", "COURSE_QUIET": "1"}  # bwrap clears it: see sandbox
        self.km, self.kc = _Manager(transport="ipc", ip=str(workdir / "k"),
                                    connection_file=str(workdir / "kernel.json")), None
        try:
            self.km.start_kernel(cwd=str(workdir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.kc = self.km.client()
            self.kc.start_channels()
            self.kc.wait_for_ready(timeout=START_TIMEOUT)
        except Exception:  # no kernel answered: stop what was started before reporting it
            self.close()
            raise

    def run(self, code: str, timeout: float, expression: str | None = None) -> dict:
        """Execute `code`; {"status": ok|error|timeout|dead, "ename", "evalue", "value"}. A kernel that dies
        is seen within a second, not at the end of the time limit."""
        import queue

        outputs = {"ename": "", "evalue": ""}
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False, stop_on_error=False,  # input() raises
                                 user_expressions={"v": expression} if expression else None)
        deadline = time.monotonic() + timeout
        reply, idle, grace = None, False, None  # grace: how long the last outputs may come after the reply
        while reply is None or not idle:
            now = time.monotonic()
            if reply is None and now >= deadline:
                return {"status": "timeout" if self.km.is_alive() else "dead", **outputs}
            if reply is not None and now >= grace:
                break
            wait = min(0.5, (deadline if reply is None else grace) - now)
            try:
                if idle:  # all its outputs came: only the reply is missing
                    answer = self.kc.get_shell_msg(timeout=wait)
                else:
                    msg = self.kc.get_iopub_msg(timeout=wait)  # outputs are read (and dropped) as they come
                    if msg["parent_header"].get("msg_id") == msg_id:
                        if msg["msg_type"] == "error":
                            outputs.update(ename=msg["content"]["ename"], evalue=msg["content"]["evalue"])
                        idle = msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
                    if reply is not None:
                        continue
                    answer = self.kc.get_shell_msg(timeout=0)
            except queue.Empty:
                if reply is None and not self.km.is_alive():
                    return {"status": "dead", **outputs}
                continue
            if answer["parent_header"].get("msg_id") == msg_id:
                reply, grace = answer, time.monotonic() + 5
        content = reply["content"]
        result = {"status": content["status"], **outputs}
        if content["status"] == "error":
            result.update(ename=content.get("ename", outputs["ename"]), evalue=content.get("evalue", outputs["evalue"]))
        value = (content.get("user_expressions") or {}).get("v") or {}
        if value.get("status") == "ok":
            result["value"] = value["data"].get("text/plain")
        return result

    def limits_hit(self) -> list[str]:
        """The sandbox's limits the submission reached so far, as notes for its feedback."""
        return self.sandbox.limits_hit() if self.sandbox else []

    def close(self) -> None:
        """Stop the kernel and its sandbox."""
        try:
            if self.kc:
                self.kc.stop_channels()
        finally:
            try:
                if self.km.has_kernel:
                    self.km.shutdown_kernel(now=True)
            finally:
                if self.sandbox:
                    self.sandbox.close()
