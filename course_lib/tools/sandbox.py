"""Sandboxes for grading: each submission's kernel runs under bubblewrap (`bwrap`, Debian's bubblewrap), never as root.

Used by `submission` (`course grade`, in the README's instructor section). The kernel sees a
read-only Python (the interpreter, the installed packages, `course_lib` and its data, the
mirror when one is set), its own writable folder with nothing but the submitted notebook,
and a private `/tmp` and home. It has no network (loopback only), no view of other
processes, of the other submissions, of the course sources, the hidden tests or the
gradebook. The grader talks to it over Unix sockets in its folder (ZeroMQ `ipc`).

Who it runs as:

- grading as root (Docker, CI): bubblewrap starts as root without a user namespace (so the
  mounts are root's), then `setpriv` drops to a host uid of its own (`FIRST_UID` and up, one per
  submission; no groups, no capabilities, no_new_privs) before the kernel starts. Its folder is a
  tmpfs owned by that uid; the rest must be readable by others (`unreadable` says what is not);
- grading as another user: a user namespace maps uid 65534 inside to the grader's own uid.

Limits (`Limits`; `confine` enforces the ones on all processes together): memory and processes
for all the submission's processes (a cgroup, else a watchdog), disk for its whole folder (a
sized tmpfs as root, else the watchdog), CPU time and file size per process, and sized
in-memory /tmp and home. `limits_hit` turns a limit reached into a note for the feedback.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pathlib
import secrets
import shlex
import shutil
import stat
import sys
import tempfile

from course_lib import report
from course_lib.tools import confine

__all__ = ["HOME", "SYSTEM_DIRS", "SANDBOX_UID", "FIRST_UID", "LIMITS", "Limits", "SandboxUnavailable", "bwrap",
           "readonly_paths", "unreadable", "Sandbox"]

HOME = "/home/student"
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32", "/sbin", "/etc")
SANDBOX_UID = 65534  # nobody, inside the user namespace of a grader that is not root
FIRST_UID = 2_100_000_000  # as root: each submission runs as one of the host uids from here (owning nothing)
_UIDS = 1_000_000
_in_use: set[int] = set()
_CAP_SYS_ADMIN = 21


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one submission may use (MiB, processes, seconds); see the README's grading section."""

    memory_mb: int = 8192  # all its processes together, its in-memory folders included
    address_mb: int = 32768  # address space per process (TensorFlow reserves more than it uses: 07 reaches 11.5 GiB)
    processes: int = 4096  # processes and threads, all together
    disk_mb: int = 2048  # its folder
    tmp_mb: int = 2048  # its private /tmp, and again its home (both in memory)
    file_mb: int = 1024  # largest file it writes
    cpu_seconds: int = 7200  # per process


LIMITS = Limits()


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


def unreadable(paths, *, limit: int = 3) -> list[str]:
    """Up to `limit` files or folders under `paths` that a user other than their owner cannot read."""
    found = []
    for top in paths:
        for dirpath, dirnames, filenames in os.walk(top):
            for path in [dirpath] + [os.path.join(dirpath, n) for n in filenames]:
                try:
                    mode = os.stat(path).st_mode
                except OSError:  # a dangling link: nothing to read
                    continue
                need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
                if mode & need != need:
                    found.append(f"{path} (mode {stat.filemode(mode)})")
                    if len(found) >= limit:
                        return found
                    if path == dirpath:  # what is below is out of reach anyway
                        dirnames.clear()
                        break
    return found


class Sandbox:
    """One submission's sandbox: its user, its limits, its folder; `command` wraps a command line in it."""

    def __init__(self, folder, *, limits: Limits | None = None, mirror=None, env: dict | None = None):
        self.folder = pathlib.Path(folder).resolve()  # at the same path inside: connection files name it
        self.limits, self.env = limits or LIMITS, env or {}
        self.mirror = mirror or os.environ.get("COURSE_MIRROR") or None
        self.exe = bwrap()
        if not self.exe:
            raise SandboxUnavailable(
                "Grading runs each submission in a bubblewrap sandbox, and `bwrap` was not found. "
                "Fix: install it (Debian/Ubuntu: `sudo apt-get install bubblewrap`), or pass "
                "--no-sandbox to run submissions with your own user's rights (only for code you trust).")
        self.as_root = _grader_is_root()
        if self.as_root:
            _check_root_can_drop()
        self.uid = _new_uid() if self.as_root else None
        self.control = pathlib.Path(tempfile.mkdtemp(prefix="course_sandbox_"))
        self.pidfile = self.control / "pid"
        self.cgroups = confine.Cgroups(self.limits.memory_mb * 2**20, self.limits.processes)
        self.mounted, self.watchdog = False, None
        try:
            if self.as_root:
                confine.mount_folder(self.folder, self.limits.disk_mb * 2**20, self.uid)
                self.mounted = True
        except OSError as exc:
            self.close()
            raise SandboxUnavailable(f"Grading as root gives each submission a folder of its own size, and {exc}. "
                                     "Fix: grade as root with the right to mount (CAP_SYS_ADMIN), or as an "
                                     "ordinary user.") from exc
        no_cgroup = not self.cgroups.paths
        if no_cgroup or not self.mounted:
            self.watchdog = confine.Watchdog(
                self.pidfile, memory_bytes=self.limits.memory_mb * 2**20 if no_cgroup else None,
                processes=self.limits.processes if no_cgroup else None,
                folder=self.folder, folder_bytes=None if self.mounted else self.limits.disk_mb * 2**20)
            self.watchdog.start()

    def mechanisms(self) -> dict:
        """Which mechanism enforces each limit here: {"memory", "processes", "disk", "user"}."""
        cgroup = ("cgroup v2" if self.cgroups.v2 else "cgroup v1") if self.cgroups.paths else "watchdog"
        return {"memory": cgroup, "processes": cgroup, "disk": "tmpfs" if self.mounted else "watchdog",
                "user": f"host uid {self.uid}" if self.as_root else f"uid {SANDBOX_UID} in a user namespace"}

    def command(self, argv: list[str]) -> list[str]:
        """The command line that runs `argv` in this sandbox (its only writable folder is `folder`)."""
        lim, work = self.limits, str(self.folder)
        cmd = [self.exe, "--die-with-parent", "--new-session"]
        if self.as_root:  # no user namespace: bubblewrap mounts as root, setpriv drops to the uid below
            cmd += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup"]
        else:
            cmd += ["--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
        cmd += ["--clearenv", "--proc", "/proc", "--dev", "/dev",  # /tmp and the home live in memory, sized
                "--perms", "01777", "--size", str(lim.tmp_mb * 2**20), "--tmpfs", "/tmp",
                "--size", str(lim.tmp_mb * 2**20), "--tmpfs", "/home", "--dir", HOME]
        for path in SYSTEM_DIRS:
            if os.path.isdir(path):
                cmd += ["--ro-bind", path, path]
        bound, made = [p for p in SYSTEM_DIRS if os.path.isdir(p)], set()
        for path in [*readonly_paths(self.mirror), work]:  # folders above them: made by bubblewrap, open to all
            for parent in map(str, reversed(pathlib.PurePath(path).parents[:-1])):
                if parent not in made and not any(parent == b or parent.startswith(b + "/") for b in bound):
                    cmd += ["--perms", "0755", "--dir", parent]
                    made.add(parent)
            cmd += ["--ro-bind" if path != work else "--bind", path, path]
            bound.append(path)
        cmd += ["--chdir", work]
        for key, value in {**_base_env(self.mirror), **self.env}.items():
            cmd += ["--setenv", key, value]
        cmd.append("--")
        nproc = lim.processes if self.as_root else max(lim.processes, 4096)  # not root: counts all the user's
        limits = [shutil.which("prlimit") or "prlimit", f"--as={lim.address_mb * 2**20}", f"--cpu={lim.cpu_seconds}",
                  f"--nproc={nproc}", f"--fsize={lim.file_mb * 2**20}", "--"]
        if self.as_root:
            uid = str(self.uid)
            drop = [shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
            cmd += ["/bin/sh", "-c", f"chown -R {uid}:{uid} {shlex.quote(work)} {HOME} && exec \"$@\"", "sh", *drop]
        return self._launcher() + cmd + limits + list(argv)

    def _launcher(self) -> list[str]:
        """Before bubblewrap: note its pid (for the watchdog) and enter the cgroups (their children stay in)."""
        steps = [f"echo $$ > {shlex.quote(str(self.pidfile))}"]
        steps += [f"echo $$ > {shlex.quote(f)}" for f in self.cgroups.procs_files()]
        return ["/bin/sh", "-c", " && ".join(steps) + ' && exec "$@"', "course-sandbox"]

    def limits_hit(self) -> list[str]:
        """A note for each limit the submission reached (for its feedback: the submission's result)."""
        lim, notes = self.limits, []
        watched = self.watchdog.exceeded if self.watchdog else []
        if self.cgroups.memory_exceeded() or "memory" in watched:
            notes.append(f"the submission went over its memory limit ({lim.memory_mb} MiB for all its processes "
                         "together)" + (": the sandbox's watchdog ended it" if "memory" in watched else ""))
        if self.cgroups.processes_exceeded() or "processes" in watched:
            notes.append(f"the submission tried to run more than its limit of {lim.processes} processes and "
                         "threads together" + (": the sandbox's watchdog ended it" if "processes" in watched else ""))
        full = False
        if self.mounted:
            try:
                vfs = os.statvfs(self.folder)
                full = vfs.f_bavail * vfs.f_frsize < 2**20
            except OSError:
                pass
        if full or "disk" in watched:
            notes.append(f"the submission filled its folder's disk limit ({lim.disk_mb} MiB)"
                         + (": the sandbox's watchdog ended it" if "disk" in watched else ""))
        return notes

    def close(self) -> None:
        """End whatever still runs in the sandbox, and remove its cgroups, its folder's mount and its records."""
        if self.watchdog:
            self.watchdog.stop()
        self.cgroups.remove()
        if self.mounted:
            confine.unmount_folder(self.folder)
            self.mounted = False
        shutil.rmtree(self.control, ignore_errors=True)
        _in_use.discard(self.uid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _grader_is_root() -> bool:
    return os.geteuid() == 0


def _check_root_can_drop() -> None:
    """Grading as root: the tools and the right to mount that running the student as another uid needs."""
    missing = [t for t in ("setpriv", "mount", "umount") if not shutil.which(t)]
    if missing:
        raise SandboxUnavailable(f"Grading as root runs each submission as an unprivileged user, which needs "
                                 f"{', '.join(missing)} (not found). Fix: install util-linux and mount, "
                                 "or grade as an ordinary user.")
    if not _may_mount():
        raise SandboxUnavailable("Grading as root without the right to mount (CAP_SYS_ADMIN, as in a default "
                                 "Docker container) cannot run a submission as an unprivileged user. Fix: grade "
                                 "as an ordinary user who can read the course environment, or give the "
                                 "container CAP_SYS_ADMIN (`docker run --cap-add SYS_ADMIN ...`).")


def _may_mount() -> bool:
    """Whether this process holds CAP_SYS_ADMIN (bubblewrap as root without a user namespace needs it)."""
    caps = next((line.split()[1] for line in pathlib.Path("/proc/self/status").read_text().splitlines()
                 if line.startswith("CapEff:")), "0")
    return bool(int(caps, 16) >> _CAP_SYS_ADMIN & 1)


def _new_uid() -> int:
    """A host uid for one submission, not used by another submission of this grader."""
    while True:
        uid = FIRST_UID + secrets.randbelow(_UIDS)
        if uid not in _in_use:
            _in_use.add(uid)
            return uid


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
