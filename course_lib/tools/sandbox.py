"""Sandboxes for grading: each submission's kernel runs under bubblewrap (`bwrap`, Debian's bubblewrap).

Used by `submission` (`course grade`, in the README's instructor section). The kernel sees a
read-only Python (the interpreter, the installed packages, `course_lib` and its data, the
mirror when one is set), its own writable folder with nothing but the submitted notebook,
and a private `/tmp` and home. It has no network (loopback only), no view of other
processes, of the other submissions, of the course sources, the hidden tests or the
gradebook, and runs as an unprivileged user with limits on memory (address space per process,
and sized in-memory /tmp and home), CPU time, file size and processes. A cgroup would bound a
submission's processes together; bubblewrap alone does not.
The grader talks to it over Unix sockets in the submission's folder (ZeroMQ `ipc`).
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import sys

from course_lib import report

__all__ = ["HOME", "SYSTEM_DIRS", "SANDBOX_UID", "SandboxUnavailable", "bwrap", "readonly_paths", "command"]

HOME = "/home/student"
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32", "/sbin", "/etc")
SANDBOX_UID = 65534  # nobody
TMP_MB, HOME_MB, FILE_MB = 2048, 2048, 1024  # private /tmp and home (in memory), largest file written


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create a sandbox on this machine."""


def bwrap() -> str | None:
    """The bubblewrap executable, or None when it is not installed."""
    return shutil.which("bwrap")


def readonly_paths(mirror=None) -> list[str]:
    """What the kernel may read besides the system: Python, the packages, course_lib, its data, the mirror."""
    paths = {sys.base_prefix, sys.prefix, sys.exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))}
    for name in ("course_lib", "course_lib._data"):
        spec = importlib.util.find_spec(name)
        paths.update(spec.submodule_search_locations or [])
    if mirror:
        paths.add(str(pathlib.Path(mirror).resolve()))
    paths = sorted(os.path.realpath(p) for p in paths if p and os.path.isdir(p))
    # a folder already inside another one is bound with it
    return [p for p in paths if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in paths)]


def command(workdir, argv: list[str], *, memory_mb: int = 12000, cpu_seconds: int = 7200,
            mirror=None, env: dict | None = None) -> list[str]:
    """The command line that runs `argv` in a sandbox whose only writable folder is `workdir`."""
    mirror = mirror or os.environ.get("COURSE_MIRROR") or None
    exe = bwrap()
    if not exe:
        raise SandboxUnavailable(
            "Grading runs each submission in a bubblewrap sandbox, and `bwrap` was not found. "
            "Fix: install it (Debian/Ubuntu: `sudo apt-get install bubblewrap`), or pass "
            "--no-sandbox to run submissions with your own user's rights (only for code you trust).")
    cmd = [exe, "--die-with-parent", "--new-session", "--unshare-all", "--unshare-user",
           "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--clearenv",
           "--proc", "/proc", "--dev", "/dev",  # /tmp and the home live in memory: sized, as files are
           "--size", str(TMP_MB * 2**20), "--tmpfs", "/tmp", "--size", str(HOME_MB * 2**20), "--tmpfs", "/home",
           "--dir", HOME]
    for path in SYSTEM_DIRS:
        if os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    for path in readonly_paths(mirror):
        cmd += ["--ro-bind", path, path]
    work = str(pathlib.Path(workdir).resolve())  # at the same path inside: connection files name it
    cmd += ["--bind", work, work, "--chdir", work]
    for key, value in {**_base_env(mirror), **(env or {})}.items():
        cmd += ["--setenv", key, value]
    limits = [shutil.which("prlimit") or "prlimit", f"--as={memory_mb * 2**20}",
              f"--cpu={cpu_seconds}", "--nproc=4096", f"--fsize={FILE_MB * 2**20}", "--"]
    return cmd + ["--"] + limits + list(argv)


def _base_env(mirror) -> dict:
    env = {"HOME": HOME, "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin",
           "MALLOC_ARENA_MAX": "2",  # fewer malloc arenas: less address space under the memory limit
           "MPLBACKEND": "Agg", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PYTHONNOUSERSITE": "1"}
    for key, value in os.environ.items():
        if key.startswith("COURSE_") or key in ("TF_CPP_MIN_LOG_LEVEL", "OMP_NUM_THREADS"):
            env[key] = value
    env.pop("COURSE_CACHE", None)  # the default, in the private home: nothing shared between submissions
    env.pop(report.METRICS_ENV, None)
    if mirror:
        env["COURSE_MIRROR"] = str(pathlib.Path(mirror).resolve())
    # the kernel imports the grader's own course_lib (bound read-only above), wherever it comes from
    env["PYTHONPATH"] = str(pathlib.Path(importlib.util.find_spec("course_lib").origin).resolve().parent.parent)
    return env
