"""course_lib.tools.sandbox and confine: a submission never runs as root, and its limits hold for all its processes.

Each limit is tried by a tiny submission (a Python script, no kernel) in a sandbox given small
limits, so each takes seconds: a fork bomb (300 processes against a limit of 64), a memory hog
(three children of 100 MiB against 256 MiB for all) and a disk filler (five 24 MiB files against
a 64 MiB folder). Each runs twice: enforced by the kernel (cgroups and a sized tmpfs: grading
as root, or with a delegated cgroup), and by the watchdog that takes over where those are
missing. One slow test grades a notebook whose cell goes over the memory limit: the note is
the submission's result, in its feedback, and the exercise before it keeps its points.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import nbformat
import pytest

from course_lib.tools import confine, preflight, sandbox, submission

SMALL = sandbox.Limits(memory_mb=256, processes=64, disk_mb=64, tmp_mb=64, address_mb=4096)
IS_ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def _needs_bwrap():
    if sandbox.bwrap() is None and not os.environ.get("CI"):  # .ci/run installs it: CI fails instead
        pytest.skip("needs bubblewrap for the grading sandbox (sudo apt-get install bubblewrap)")


def _run(folder: pathlib.Path, code: str, limits=SMALL, mirror=None):
    """Run `code` in a sandbox on `folder`; (process, its limit notes, its mechanisms)."""
    folder.mkdir(exist_ok=True)
    with sandbox.Sandbox(folder, limits=limits, mirror=mirror) as box:
        proc = subprocess.run(box.command([sys.executable, "-c", textwrap.dedent(code)]), capture_output=True,
                              text=True, timeout=120)
        return proc, box.limits_hit(), box.mechanisms()


@pytest.fixture(params=["kernel", "watchdog"])
def enforced_by(request, monkeypatch, tmp_path):
    """Which mechanism enforces the limits: the kernel's (cgroups, a sized tmpfs), or the watchdog."""
    if request.param == "watchdog":  # no cgroup can be made, no folder mounted: as for a grader without rights
        monkeypatch.setattr(confine, "CGROUP_ROOT", tmp_path / "no_cgroups")
        monkeypatch.setattr(sandbox, "_grader_is_root", lambda: False)
    else:
        (tmp_path / "probe").mkdir()
        with sandbox.Sandbox(tmp_path / "probe", limits=SMALL) as box:
            mechanisms = box.mechanisms()
        if "watchdog" in mechanisms.values():
            pytest.skip(f"this grader cannot make cgroups and mount a folder here: {mechanisms}")
    return request.param


# ------------------------------------------------------------------ who the submission is

@pytest.mark.skipif(not IS_ROOT, reason="grading as root only")
def test_as_root_the_submission_runs_as_an_unprivileged_host_user(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir(mode=0o755)
    (mirror / "root_only.txt").write_text("the hidden tests")
    (mirror / "root_only.txt").chmod(0o600)
    proc, _, mechanisms = _run(tmp_path / "work", f"""
        import os
        print("uid_map:", " ".join(open("/proc/self/uid_map").read().split()))
        for line in open("/proc/self/status"):
            if line.startswith(("Uid:", "Gid:", "Groups:", "CapEff:", "CapBnd:", "NoNewPrivs:")):
                print(" ".join(line.split()))
        for path in ({str(mirror / 'root_only.txt')!r}, "/etc/shadow"):
            try:
                open(path).read()
                print("READ", path)
            except OSError as exc:
                print("refused", type(exc).__name__)
        for path in ("mine.txt", "/tmp/mine.txt", os.path.expanduser("~/mine.txt")):
            open(path, "w").write("x")
        import course_lib, numpy
        print("wrote its folder, /tmp and home; imported course_lib and numpy")
    """, mirror=mirror)
    print(proc.stdout)  # the report quotes it (pytest -s)
    assert proc.returncode == 0, proc.stderr
    uid = int(mechanisms["user"].split()[-1])
    assert uid >= sandbox.FIRST_UID
    lines = proc.stdout.splitlines()
    # the initial user namespace: no mapping, so the uid below is the host's own
    assert "uid_map: 0 0 4294967295" in lines
    assert f"Uid: {uid} {uid} {uid} {uid}" in lines and f"Gid: {uid} {uid} {uid} {uid}" in lines
    assert "Groups:" in lines and "CapEff: 0000000000000000" in lines and "CapBnd: 0000000000000000" in lines
    assert "NoNewPrivs: 1" in lines
    assert "READ" not in proc.stdout and proc.stdout.count("refused PermissionError") >= 1
    assert "wrote its folder, /tmp and home; imported course_lib and numpy" in lines


def test_what_the_submission_cannot_read_is_named_with_the_fix(tmp_path, monkeypatch):
    (tmp_path / "env" / "lib").mkdir(parents=True)
    (tmp_path / "env" / "lib" / "ok.py").write_text("")
    (tmp_path / "env" / "lib" / "closed.py").write_text("")
    (tmp_path / "env" / "lib" / "closed.py").chmod(0o600)
    (tmp_path / "env").chmod(0o755)
    (tmp_path / "env" / "lib").chmod(0o755)
    assert sandbox.unreadable([tmp_path / "env"]) == [f"{tmp_path / 'env' / 'lib' / 'closed.py'} (mode -rw-------)"]
    (tmp_path / "env" / "lib").chmod(0o700)
    assert sandbox.unreadable([tmp_path / "env"]) == [f"{tmp_path / 'env' / 'lib'} (mode drwx------)"]
    monkeypatch.setattr(sandbox, "_grader_is_root", lambda: True)
    monkeypatch.setattr(sandbox, "_may_mount", lambda: False)
    with pytest.raises(sandbox.SandboxUnavailable, match="CAP_SYS_ADMIN.*Fix: grade as an ordinary user"):
        sandbox.Sandbox(tmp_path / "env")


@pytest.mark.slow
@pytest.mark.skipif(not IS_ROOT, reason="grading as root only")
def test_the_preflight_refuses_a_mirror_the_submission_cannot_read(tmp_path, monkeypatch):
    (tmp_path / "mirror" / "keras").mkdir(parents=True)
    (tmp_path / "mirror").chmod(0o755)
    (tmp_path / "mirror" / "keras").chmod(0o700)
    monkeypatch.setenv("COURSE_MIRROR", str(tmp_path / "mirror"))
    problems = preflight.sandbox()
    assert len(problems) == 1 and f"cannot read {tmp_path / 'mirror' / 'keras'} (mode drwx------)" in problems[0]
    assert "Fix: `chmod -R o+rX`" in problems[0]


# ------------------------------------------------------------------ limits on all its processes together

FORK_BOMB = """
    import os, time
    started = 0
    try:
        for _ in range(300):
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            started += 1
    except OSError as exc:
        print("fork refused:", exc)
    print("started", started, flush=True)
    time.sleep(3)
    print("still running")
"""


def test_the_process_limit_holds(enforced_by, tmp_path):
    # under the watchdog, the bomb waits long enough for a look on a busy machine (the watchdog ends it early)
    bomb = FORK_BOMB if enforced_by == "kernel" else FORK_BOMB.replace("time.sleep(3)", "time.sleep(30)")
    proc, notes, _ = _run(tmp_path / "work", bomb)
    assert notes == [f"the submission tried to run more than its limit of {SMALL.processes} processes and threads "
                     "together" + (": the sandbox's watchdog ended it" if enforced_by == "watchdog" else "")], notes
    if enforced_by == "kernel":  # fork itself fails: 300 never run
        started = int(proc.stdout.split("started ")[1].split()[0])
        assert "fork refused" in proc.stdout and started < SMALL.processes, proc.stdout
    else:  # the watchdog ends the whole submission within a look or two
        assert "still running" not in proc.stdout and proc.returncode == -9, (proc.returncode, proc.stdout)


MEMORY_HOG = """
    import os, time
    children = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            held = bytearray(100 * 2**20)  # touched: resident
            time.sleep(3)
            os._exit(0)
        children.append(pid)
    lived = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        lived += os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    print("children that lived", lived)
"""


def test_memory_is_limited_for_all_the_processes_together(enforced_by, tmp_path):
    proc, notes, _ = _run(tmp_path / "work", MEMORY_HOG)
    assert notes == [f"the submission went over its memory limit ({SMALL.memory_mb} MiB for all its processes "
                     "together)" + (": the sandbox's watchdog ended it" if enforced_by == "watchdog" else "")], notes
    assert "children that lived 3" not in proc.stdout
    if enforced_by == "kernel":  # the OOM killer ends a child; the others finish
        assert "children that lived" in proc.stdout, proc.stderr


DISK_FILLER = """
    import time
    written = 0
    try:
        for i in range(5):
            with open(f"part{i}.bin", "wb") as f:
                f.write(b"x" * 24 * 2**20)
            written += 1
            print("written", written, flush=True)
            time.sleep(0.6)
    except OSError as exc:
        print("write refused:", exc)
    print("done")
"""


def test_disk_is_limited_for_the_whole_folder(enforced_by, tmp_path):
    proc, notes, mechanisms = _run(tmp_path / "work", DISK_FILLER)
    assert notes == [f"the submission filled its folder's disk limit ({SMALL.disk_mb} MiB)"
                     + (": the sandbox's watchdog ended it" if enforced_by == "watchdog" else "")], notes
    assert "written 5" not in proc.stdout
    if enforced_by == "kernel":
        assert mechanisms["disk"] == "tmpfs"
        assert "written 2" in proc.stdout and "No space left on device" in proc.stdout, proc.stdout
        assert not (tmp_path / "work" / "part0.bin").exists(), "the folder's files outlived its tmpfs"


@pytest.mark.skipif(not IS_ROOT, reason="grading as root only")
def test_daemons_end_with_the_sandbox(tmp_path):
    """A process that ignores every signal it can and leaves its parent is ended with the submission."""
    folder = tmp_path / "work"
    folder.mkdir()
    with sandbox.Sandbox(folder, limits=SMALL) as box:
        code = textwrap.dedent("""
            import os, signal, time
            if os.fork() == 0:
                os.setsid()
                for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                    signal.signal(sig, signal.SIG_IGN)
                if os.fork() == 0:
                    time.sleep(600)
                os._exit(0)
            time.sleep(0.5)
        """)
        subprocess.run(box.command([sys.executable, "-c", code]), timeout=60, check=True)
        uid = box.uid
    left = [p for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) == uid]
    assert left == [], f"processes of the submission's uid {uid} outlived its sandbox: {left}"


def _uid_of(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


# ------------------------------------------------------------------ a limit hit is the submission's result

@pytest.mark.slow
@pytest.mark.parametrize("hog", ["children", "kernel"])
def test_a_limit_hit_is_the_submissions_result_with_a_note(hog, tmp_path, monkeypatch):
    """The grader reaches the kernel's sockets in its sized folder; going over the memory limit is noted.

    Three children of 700 MiB: the OOM killer ends one, the kernel lives on, and the feedback
    says why. The kernel itself holding 1600 MiB: the run stops there, and its status says why.
    """
    if not os.environ.get("COURSE_MIRROR"):
        pytest.skip("needs COURSE_MIRROR (the README's offline route)")
    monkeypatch.setattr(sandbox, "LIMITS", sandbox.Limits(memory_mb=1536, disk_mb=64))
    code = (textwrap.dedent(MEMORY_HOG).replace("100 * 2**20", "700 * 2**20") if hog == "children"
            else "held = bytearray(1600 * 2**20)")
    cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell('grader.check("q1")'),
             nbformat.v4.new_code_cell(code), nbformat.v4.new_code_cell('grader.check("q2")')]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "hog.ipynb")
    case = {"hidden": False, "points": 1.0, "message": ""}
    tests = {q: {"points": 1.0, "cases": [{**case, "code": "assert x == 1\n"}]} for q in ("q1", "q2")}
    result = submission.grade(tmp_path / "hog.ipynb", tests, cell_timeout=20, total_timeout=600)  # a dead kernel: 20 s
    note = "the submission went over its memory limit (1536 MiB for all its processes together)"
    if hog == "children":
        assert result["status"] == "graded" and result["feedback"]["other cells"] == [note], result
        assert result["scores"] == {"q1": (1.0, 1.0), "q2": (1.0, 1.0)}
    else:  # the submission's result, not an error of the machine
        assert result["status"] == f"graded; stopped at cell 2 (exercise q2): killed the kernel: {note}", result
        assert result["scores"] == {"q1": (1.0, 1.0), "q2": (0.0, 1.0)}


# ------------------------------------------------------------------ cgroup v2

def test_on_cgroup_v2_the_grader_writes_the_limits_and_reads_what_was_hit(tmp_path, monkeypatch):
    """The v2 path on a stand-in tree (this machine's memory and pids controllers are v1): the files the
    grader writes and reads. That a v2 kernel then enforces them is not tested here."""
    monkeypatch.setattr(confine, "_own_path", lambda controller: "grader")
    parent = tmp_path / "grader"
    parent.mkdir()
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (parent / "cgroup.controllers").write_text("cpu memory pids\n")
    groups = confine.Cgroups(256 << 20, 64, root=tmp_path)
    (path,) = set(groups.paths.values())
    assert groups.v2 and path.parent == parent and (parent / "cgroup.subtree_control").read_text() == "+memory +pids"
    assert (path / "memory.max").read_text() == str(256 << 20) and (path / "pids.max").read_text() == "64"
    assert groups.procs_files() == [str(path / "cgroup.procs")]
    assert not groups.memory_exceeded() and not groups.processes_exceeded()
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    (path / "pids.events").write_text("max 3\n")
    assert groups.memory_exceeded() and groups.processes_exceeded()


def test_on_cgroup_v2_without_the_controllers_the_watchdog_takes_over(tmp_path):
    """A real cgroup2 mount, whose memory and pids controllers a v1 hierarchy holds (as here): no cgroup is
    made, which hands memory and processes to the watchdog (`sandbox`: no cgroup paths, a watchdog)."""
    if not IS_ROOT:
        pytest.skip("mounting a cgroup2 file system needs root")
    mount = tmp_path / "cgroup2"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "cgroup2", "none", str(mount)], capture_output=True).returncode:
        pytest.skip("cgroup2 cannot be mounted here")
    try:
        controllers = (mount / "cgroup.controllers").read_text().split()
        if {"memory", "pids"} <= set(controllers):
            pytest.skip(f"this machine's cgroup v2 has the controllers ({controllers}): the v1 case is not here")
        groups = confine.Cgroups(256 << 20, 64, root=mount)
        assert groups.v2 and groups.paths == {} and groups.procs_files() == []
        assert not any(p.name.startswith("course_grade_") for p in mount.iterdir())
    finally:
        subprocess.run(["umount", str(mount)], check=True)
