"""Benchmark sections for speed, scale and memory: notebook runtimes, peak memory, mixed precision.

Measures what `course_lib.scale` and the fast profile promise (taught in `03_fine_tuning`):
the fast-profile runtime of every source notebook, the peak resident memory of the process
tree (this process and the notebook kernels it starts), and the fine-tuning step time with
and without mixed precision where a GPU is present. Each is printed against its target.

Run alone:   python benchmarks/course_sections.py [--skip-notebooks] [--notebooks 02_ 03_]
From benchmark.py:  add_arguments(parser); run(args)
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import sys
import tempfile
import threading
import time

TARGETS = {
    "course_seconds": 16 * 60,  # every notebook, fast profile, this 2-core CPU
    "notebook_seconds": 3 * 60,  # each notebook but those below
    "notebook_seconds_each": {"03_fine_tuning": 8 * 60,  # the fine-tuning grid: many training runs
                              "03b_fine_tuning_explorations": 8 * 60,
                              "07_export": 3 * 60},  # a short fine-tuning, four formats, three pitfalls
    "peak_rss_bytes": 4 * 1024**3,  # peak resident memory of the process tree
}


def peak_resident(proc) -> int:
    """High-water mark of one process's resident bytes (Linux VmHWM), else its resident bytes now."""
    try:
        for line in pathlib.Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return max(int(line.split()[1]) * 1024, proc.memory_info().rss)
    except (OSError, ValueError, IndexError):
        pass
    return proc.memory_info().rss


def _unexeced_fork(proc, root) -> bool:
    """True for a child caught between fork and exec: a copy of `root` whose pages are not its own.

    Such a child reports the parent's whole resident size (1.3 GB for a test process that has
    loaded TensorFlow) until it execs the kernel a moment later; counting it made a 1-cell
    notebook look like it used 1.3 GB.
    """
    import psutil

    try:
        return proc.ppid() == root.pid and proc.cmdline() == root.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return True


def tree_rss(pid: int | None = None, include_root: bool = True, exclude=frozenset()) -> int:
    """Peak resident bytes of a process and its descendants (or the descendants only), summed."""
    import psutil

    try:
        root = psutil.Process(pid or os.getpid())
        procs = ([root] if include_root else []) + [p for p in root.children(recursive=True)
                                                     if p.pid not in exclude and not _unexeced_fork(p, root)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += peak_resident(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


class MemoryMonitor:
    """Samples resident memory in a thread: peak of the whole tree and of the children only.

    Each sample reads every process's own high-water mark, so a peak between two samples
    still counts; only a process that starts and ends between two samples is missed. With
    `new_children_only`, children that were already running at the start do not count.
    """

    def __init__(self, interval: float = 0.2, new_children_only: bool = False):
        self.interval, self.peak, self.children_peak = interval, 0, 0
        self.new_children_only, self._old = new_children_only, frozenset()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _update(self) -> None:
        self.children_peak = max(self.children_peak, tree_rss(include_root=False, exclude=self._old))
        self.peak = max(self.peak, tree_rss())

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._update()
            self._stop.wait(self.interval)

    def __enter__(self):
        if self.new_children_only:
            import psutil

            self._old = frozenset(p.pid for p in psutil.Process().children(recursive=True))
        self._update()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._update()
        return False


def rusage_peaks() -> dict:
    """Kernel-recorded peak RSS (bytes) of this process and of its largest finished child."""
    to_bytes = 1 if sys.platform == "darwin" else 1024  # Linux reports kilobytes
    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * to_bytes,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * to_bytes}


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children (the notebook kernels)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def notebook_runtimes(only=None, timeout: int = 900, out=None) -> list[dict]:
    """Execute each source notebook in the fast profile, from empty caches; time it and sample its memory."""
    from course_lib.tools import notebooks, runner

    os.environ["COURSE_PROFILE"] = "fast"
    os.environ.setdefault("CI", "true")  # no progress bars in the kernels' output
    out = pathlib.Path(out or tempfile.mkdtemp(prefix="course-bench-"))
    os.environ["COURSE_CACHE"] = str(out / "cache")  # empty caches: a learner's first run
    rows = []
    for path in notebooks.source_notebooks(only=only):
        print(f"[bench] running {path.name} ...", flush=True)
        cpu_before = children_cpu_seconds()
        with MemoryMonitor(new_children_only=True) as mon:  # this notebook's kernel, not older children
            result = runner.run_notebook(path, out, timeout)
        rows.append({"notebook": path.stem, "seconds": result["seconds"], "status": result["status"],
                     "cpu_seconds": children_cpu_seconds() - cpu_before, "kernel_peak_rss": mon.children_peak})
    return rows


def step_time(policy: str, jit_compile: bool, steps: int = 20, batch: int = 32,
              image_size: int = 224) -> float:
    """Seconds per fine-tuning step of MobileNetV2 (all layers trainable) under a dtype policy."""
    import keras
    import numpy as np

    from course_lib import backbones, scale

    keras.mixed_precision.set_global_policy(policy)
    try:
        model = scale.build_classifier(backbones.load("mobilenet_v2", image_size, weights=None,
                                                      trainable=True), 5)
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy",
                      jit_compile=jit_compile)
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, (batch, image_size, image_size, 3)).astype("float32")
        y = rng.integers(0, 5, batch)
        for _ in range(3):  # trace, compile and warm up
            model.train_on_batch(x, y)
        start = time.perf_counter()
        for _ in range(steps):
            loss = model.train_on_batch(x, y)
        float(np.asarray(loss))  # wait for the device
        return (time.perf_counter() - start) / steps
    finally:
        keras.mixed_precision.set_global_policy("float32")


def mixed_precision_section(require_gpu: bool = True, **kwargs) -> list[dict] | None:
    """Step times for float32, mixed precision, and mixed precision + XLA; None without a GPU."""
    from course_lib import config, scale

    device = config.accelerator()
    if require_gpu and device != "gpu":
        print(f"[bench] mixed precision: skipped, no GPU on this machine (device: {device}); "
              "the course keeps float32 on a CPU.")
        return None
    mixed = scale.policy_name(True, "gpu")
    rows = []
    for policy, jit in (("float32", False), (mixed, False), (mixed, True)):
        seconds = step_time(policy, jit, **kwargs)
        rows.append({"policy": policy, "jit_compile": jit, "ms_per_step": 1000 * seconds})
    base = rows[0]["ms_per_step"]
    for row in rows:
        row["speedup"] = base / row["ms_per_step"]
    return rows


def target_rows(notebook_rows: list[dict] | None, peak_rss: int) -> list[tuple]:
    """(what, target, measured, PASS/MISS) for the course's speed and memory targets."""
    rows = []
    if notebook_rows:
        total = sum(r["seconds"] for r in notebook_rows)
        from course_lib.tools import notebooks

        n_all = len(notebooks.source_notebooks())
        what = ("whole course, fast profile" if len(notebook_rows) == n_all
                else f"{len(notebook_rows)} of {n_all} notebooks only, fast profile")
        rows.append((what, f"<= {TARGETS['course_seconds']} s", f"{total:.0f} s",
                     total <= TARGETS["course_seconds"]))
        own = TARGETS["notebook_seconds_each"]
        for r in notebook_rows:
            if r["notebook"] in own:
                rows.append((f"notebook {r['notebook']}", f"<= {own[r['notebook']]} s", f"{r['seconds']:.0f} s",
                             r["seconds"] <= own[r["notebook"]]))
        rest = [r for r in notebook_rows if r["notebook"] not in own]
        if rest:
            slowest = max(rest, key=lambda r: r["seconds"])
            rows.append((f"slowest other notebook ({slowest['notebook']})", f"<= {TARGETS['notebook_seconds']} s",
                         f"{slowest['seconds']:.0f} s", slowest["seconds"] <= TARGETS["notebook_seconds"]))
    what = "peak RSS, notebook kernel tree" if notebook_rows else "peak RSS, benchmark process tree"
    rows.append((what, f"<= {gib(TARGETS['peak_rss_bytes'])}", gib(peak_rss),
                 peak_rss <= TARGETS["peak_rss_bytes"]))
    return [(what, target, measured, "PASS" if ok else "MISS") for what, target, measured, ok in rows]


def gib(n: float) -> str:
    """Bytes as GiB with two decimals."""
    return f"{n / 1024**3:.2f} GiB"


def table(headers: list[str], rows: list[tuple]) -> str:
    """A plain-text table with aligned columns."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this file's options to a benchmark argument parser."""
    parser.add_argument("--skip-notebooks", action="store_true",
                        help="skip executing the notebooks (the slow section)")
    parser.add_argument("--notebooks", nargs="*", default=None, metavar="NAME",
                        help="run only the notebooks whose name contains one of these")
    parser.add_argument("--notebook-timeout", type=int, default=900, help="seconds per notebook cell")


def run(args) -> dict:
    """Run the sections, print their tables and targets; returns the measurements."""
    with MemoryMonitor() as mon:
        nb_rows = None if args.skip_notebooks else notebook_runtimes(args.notebooks, args.notebook_timeout)
        mp_rows = mixed_precision_section()
    peaks = rusage_peaks()
    memory = {"tree": max(mon.peak, peaks["self"]), "self": peaks["self"],
              # not getrusage's children figure: a forked kernel inherits this process's peak before exec
              "kernels": max(r["kernel_peak_rss"] for r in nb_rows) if nb_rows else None}
    measured = memory["kernels"] if nb_rows else memory["tree"]
    print_results(nb_rows, mp_rows, memory, target_rows(nb_rows, measured))
    return {"notebooks": nb_rows, "mixed_precision": mp_rows, "memory": memory,
            "targets": target_rows(nb_rows, measured)}


def print_results(nb_rows, mp_rows, memory: dict, targets: list[tuple]) -> None:
    """Print the notebook table, the mixed-precision table, memory and the targets."""
    print("\n== Notebook runtimes (fast profile, executed with nbclient) ==")
    if nb_rows is None:
        print("skipped (--skip-notebooks)")
    else:
        print(table(["notebook", "status", "seconds", "kernel CPU s", "peak RSS (kernel tree)"],
                    [(r["notebook"], r["status"], f"{r['seconds']:.1f}", f"{r['cpu_seconds']:.1f}",
                      gib(r["kernel_peak_rss"])) for r in nb_rows]))
        print("seconds: wall clock (the target); kernel CPU s: user+system CPU time of the kernel, "
              "less sensitive to other load on the machine")
    print("\n== Fine-tuning step time, MobileNetV2 224, batch 32 ==")
    if mp_rows is None:
        print("skipped: no GPU (mixed precision is off on a CPU)")
    else:
        print(table(["policy", "jit_compile", "ms/step", "speedup vs float32"],
                    [(r["policy"], r["jit_compile"], f"{r['ms_per_step']:.1f}", f"{r['speedup']:.2f}x")
                     for r in mp_rows]))
    print("\n== Peak resident memory (each process's VmHWM sampled every 0.2 s; getrusage for this one) ==")
    kernels = "n/a (no notebooks run)" if memory["kernels"] is None else gib(memory["kernels"])
    print(f"notebook kernels (largest): {kernels}; benchmark process alone: "
          f"{gib(memory['self'])}; benchmark process tree: {gib(memory['tree'])}")
    print("\n== Targets ==")
    print(table(["what", "target", "measured", "result"], targets))


def main(argv=None) -> int:
    """Command line: run the sections alone."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    results = run(args)
    return 0 if all(row[3] == "PASS" for row in results["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
