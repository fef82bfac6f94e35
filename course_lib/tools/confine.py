"""Limits on a whole submission, not per process: cgroups, a sized folder, and a watchdog when neither is there.

Used by `sandbox` (`course grade`, in the README's instructor section). What bounds a
submission's processes together:

- **memory and processes**: a cgroup of its own (v2 `memory.max`/`pids.max`, or v1
  `memory.limit_in_bytes`/`pids.max`) under the grader's own cgroup, when the grader may make
  one (root, or a delegated v2 cgroup); the kernel's OOM killer and fork both enforce it;
- **disk**: its folder is a tmpfs of that size, mounted by the grader (root only), so the
  grader still reaches the kernel's sockets in it;
- otherwise a `Watchdog` thread sums the submission's processes' memory (PSS), counts them and
  measures its folder a few times a second, and ends the whole submission past a limit.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import threading
import time

__all__ = ["CGROUP_ROOT", "Cgroups", "mount_folder", "unmount_folder", "descendants", "Watchdog"]

CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")


class Cgroups:
    """A submission's cgroups (memory, pids); `paths` is empty when the grader cannot make them."""

    def __init__(self, memory_bytes: int, processes: int, *, root: pathlib.Path | None = None):
        root = pathlib.Path(root or CGROUP_ROOT)
        self.paths: dict[str, pathlib.Path] = {}
        self.v2 = (root / "cgroup.controllers").is_file()
        name = f"course_grade_{secrets.token_hex(6)}"
        try:
            if self.v2:
                self._make_v2(root, name, memory_bytes, processes)
            else:
                self._make_v1(root, name, memory_bytes, processes)
        except OSError:  # not root, no delegation, a controller missing: the watchdog takes over
            self.remove()
            self.paths = {}

    def _make_v2(self, root, name, memory_bytes, processes) -> None:
        parent = root / _own_path("")
        wanted = {"memory", "pids"}
        if not wanted <= set((parent / "cgroup.controllers").read_text().split()):
            raise OSError("the memory and pids controllers are not available here")
        (parent / "cgroup.subtree_control").write_text("+memory +pids")  # EBUSY where the parent holds processes
        path = parent / name
        path.mkdir()
        self.paths = {"memory": path, "pids": path}
        (path / "memory.max").write_text(str(memory_bytes))
        if (path / "memory.swap.max").exists():
            (path / "memory.swap.max").write_text("0")
        (path / "pids.max").write_text(str(processes))

    def _make_v1(self, root, name, memory_bytes, processes) -> None:
        for controller in ("memory", "pids"):
            if not (root / controller / "cgroup.procs").is_file():
                raise OSError(f"no cgroup v1 {controller} controller at {root / controller}")
        for controller in ("memory", "pids"):
            path = root / controller / _own_path(controller) / name
            path.mkdir()
            self.paths[controller] = path
        memory = self.paths["memory"]
        (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():  # swap counted too, where it is accounted
            try:
                (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            except OSError:
                pass
        (self.paths["pids"] / "pids.max").write_text(str(processes))

    def procs_files(self) -> list[str]:
        """The `cgroup.procs` files a process writes its pid into to enter the cgroups."""
        return sorted({str(p / "cgroup.procs") for p in self.paths.values()})

    def memory_exceeded(self) -> bool:
        """Whether the OOM killer ended a process of the submission for going over its memory limit."""
        path = self.paths.get("memory")
        if not path:
            return False
        text = _read(path / ("memory.events" if self.v2 else "memory.oom_control"))
        return _field(text, "oom_kill") > 0

    def processes_exceeded(self) -> bool:
        """Whether the submission tried to start more processes (threads included) than allowed."""
        path = self.paths.get("pids")
        return bool(path) and _field(_read(path / "pids.events"), "max") > 0

    def pids(self) -> set[int]:
        """The processes now in the submission's cgroups."""
        found = set()
        for path in set(self.paths.values()):
            found |= {int(p) for p in _read(path / "cgroup.procs").split()}
        return found

    def remove(self) -> None:
        """End whatever still runs in the cgroups, then remove them."""
        for path in set(self.paths.values()):
            if (path / "cgroup.kill").exists():
                try:
                    (path / "cgroup.kill").write_text("1")
                except OSError:
                    pass
        deadline = time.monotonic() + 10
        while self.paths and time.monotonic() < deadline:
            left = self.pids()
            for pid in left:
                _kill(pid)
            if not left:
                break
            time.sleep(0.05)
        for path in set(self.paths.values()):
            try:
                path.rmdir()
            except OSError:
                pass


def _own_path(controller: str) -> str:
    """This process's cgroup path (relative) in the v1 hierarchy of `controller`, or in v2 ("")."""
    for line in pathlib.Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if (controller in names.split(",")) if controller else names == "":
            return path.lstrip("/")
    raise OSError(f"this process is in no {controller or 'v2'} cgroup")


def _read(path: pathlib.Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _field(text: str, key: str) -> int:
    """The number after `key` in a cgroup's `key value` lines (0 when absent)."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key and parts[1].isdigit():
            return int(parts[1])
    return 0


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


# ---------------------------------------------------------------- a folder of a fixed size

def mount_folder(folder: pathlib.Path, size_bytes: int, uid: int) -> None:
    """Make `folder` a tmpfs of `size_bytes` owned by `uid`, with what it held copied in (root only)."""
    held = folder.with_name(folder.name + ".held")
    folder.rename(held)
    folder.mkdir(mode=0o700)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700,uid={uid},gid={uid},nosuid,nodev",
                        "course-grade", str(folder)], check=True, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        folder.rmdir()
        held.rename(folder)
        detail = getattr(exc, "stderr", "") or str(exc)
        raise OSError(f"cannot mount a tmpfs on {folder}: {detail.strip()}") from exc
    for entry in held.iterdir():
        if entry.is_file() and not entry.is_symlink():
            shutil.copyfile(entry, folder / entry.name)
            os.chown(folder / entry.name, uid, uid)
    shutil.rmtree(held, ignore_errors=True)


def unmount_folder(folder: pathlib.Path) -> None:
    """Unmount the tmpfs of `mount_folder` (lazily when something still holds it)."""
    for args in (["umount", str(folder)], ["umount", "-l", str(folder)]):
        if subprocess.run(args, capture_output=True, timeout=30).returncode == 0:
            return


# ---------------------------------------------------------------- the fallback: a watchdog

def descendants(pid: int) -> set[int]:
    """`pid` and every process below it (daemons included: they are reparented inside the sandbox)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        if p not in found:
            found.add(p)
            todo += children.get(p, [])
    return found


def _memory(pid: int) -> int:
    """A process's proportional resident memory in bytes (shared pages split between sharers)."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _threads(pid: int) -> int:
    try:
        return _field(pathlib.Path(f"/proc/{pid}/status").read_text().replace(":", " "), "Threads")
    except OSError:
        return 0


def _folder_bytes(folder: pathlib.Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


class Watchdog(threading.Thread):
    """Ends a submission (every process below `pidfile`'s pid) past a limit it checks a few times a second.

    `memory_bytes`, `processes`, `folder_bytes` (with `folder`): None for a limit enforced elsewhere.
    The bound is soft: what a submission can allocate or write between two looks (`interval`) comes on top.
    """

    def __init__(self, pidfile: pathlib.Path, *, memory_bytes=None, processes=None, folder=None,
                 folder_bytes=None, interval: float = 0.1):
        super().__init__(daemon=True, name="course-sandbox-watchdog")
        self.pidfile, self.memory_bytes, self.processes = pidfile, memory_bytes, processes
        self.folder, self.folder_bytes, self.interval = folder, folder_bytes, interval
        self.exceeded: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Look until stopped or until a limit is passed (then end the submission)."""
        looks = 0
        while not self._stop_event.wait(self.interval):
            try:
                root = int(self.pidfile.read_text().strip())
            except (OSError, ValueError):
                continue
            pids = descendants(root)
            over = self._over(pids, measure_folder=looks % 5 == 0)
            looks += 1
            if over:
                self.exceeded.append(over)
                for pid in descendants(root):
                    _kill(pid)
                return

    def _over(self, pids: set[int], *, measure_folder: bool) -> str | None:
        if self.processes is not None and sum(_threads(p) for p in pids) > self.processes:
            return "processes"
        if self.memory_bytes is not None and sum(_memory(p) for p in pids) > self.memory_bytes:
            return "memory"
        if measure_folder and self.folder_bytes is not None and _folder_bytes(self.folder) > self.folder_bytes:
            return "disk"
        return None

    def stop(self) -> None:
        """Stop looking (the submission has ended)."""
        self._stop_event.set()
