"""A quiet console: TensorFlow's start-up lines that read as failures, and the kernel settings of `course run`.

Importing TensorFlow (2.21 checked) on a CPU machine prints, through absl logging before
`absl::InitializeLog()` and so whatever ``TF_CPP_MIN_LOG_LEVEL`` says:

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. You may see slightly different ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.

and the first device query prints ``E0000 ... cuda_platform.cc:52] failed call to cuInit: ...``
(an ERROR, so ``TF_CPP_MIN_LOG_LEVEL=2`` keeps it; 3 would hide every genuine error too).
`tensorflow_started()` drops exactly these line shapes, and only while `cl.setup()` imports
TensorFlow and asks for its devices; every other line is written back to stderr. The CUDA lines
are kept where NVIDIA device files exist (a GPU machine whose driver fails is a real problem),
and nothing is dropped when ``TF_CPP_MIN_LOG_LEVEL=0`` asks for all of TensorFlow's messages.

One line comes later, at every ``predict``/``fit`` on NumPy arrays: with op determinism on (as
`cl.setup()` sets it), TensorFlow rewrites Keras' parallel map into a sequential one and logs
``E0000 ... node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool which is not
in the op definition: Op<name=MapDataset; ...`` (the line itself ends "Unknown attributes will be
ignored"). `filter_kernel_stderr()` drops that exact line from a Jupyter kernel's cell outputs and
`course run` from its console; every other line, TensorFlow's included, still shows.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import sys
import tempfile
import threading

__all__ = ["LOG_LEVEL", "gpu_hardware", "is_startup_noise", "drop_startup_noise", "is_harmless_log",
           "filter_kernel_stderr", "tensorflow_started", "start_tensorflow", "kernel_env", "kernel_config"]

LOG_LEVEL = "2"  # TF's C++ INFO and WARNING lines hidden, ERROR lines shown

_ABSL_HEADER = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called "
                          r"are written to STDERR")
_ONEDNN = re.compile(r"[IW]\d{4} \S+\s+\d+ port\.cc:\d+\] oneDNN custom operations are on\.")
_CUDA = re.compile(r"[IWE]\d{4} \S+\s+\d+ (cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"
                   r"|cuda_(platform|driver|diagnostics|executor)\.cc:\d+\] failed call to cuInit:)")


_UNBOUNDED_THREADPOOL = re.compile(r"E\d{4} \S+\s+\d+ node_def_util\.cc:\d+\] NodeDef mentions attribute "
                                   r"use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset;")
_MAYBE_LOG_LINE = re.compile(r"[IWEF]\d{0,4}(?: |\Z)")  # the start of a C++ log line, still cut short


def gpu_hardware() -> bool:
    """Whether this machine has NVIDIA device files (then CUDA failures are real and stay visible)."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def is_startup_noise(line: str, cuda_noise: bool = True) -> bool:
    """Whether `line` is one of TensorFlow's start-up lines that only look like failures."""
    line = line.rstrip("\r\n")
    return bool(_ABSL_HEADER.fullmatch(line) or _ONEDNN.match(line) or (cuda_noise and _CUDA.match(line)))


def drop_startup_noise(text: str, cuda_noise: bool | None = None) -> str:
    """`text` without TensorFlow's start-up noise lines; every other line kept, in order."""
    if cuda_noise is None:
        cuda_noise = not gpu_hardware()
    return "".join(line for line in text.splitlines(keepends=True) if not is_startup_noise(line, cuda_noise))


def is_harmless_log(line: str) -> bool:
    """Whether `line` is TensorFlow's known-harmless use_unbounded_threadpool ERROR (see the module docstring)."""
    return bool(_UNBOUNDED_THREADPOOL.match(line)) and not _every_message_asked()


def _every_message_asked() -> bool:
    """Whether TF_CPP_MIN_LOG_LEVEL=0 (or empty) asks for all of TensorFlow's messages: nothing is dropped."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", LOG_LEVEL).strip() in ("", "0")


class _HarmlessLogFilter:
    """`write` and `flush` that drop `is_harmless_log` lines and pass everything else on, in order.

    Text arrives in chunks (ipykernel reads file descriptor 2 1000 bytes at a time), so a last
    piece without its line end that may start a log line is held until the rest arrives or the
    stream is flushed (ipykernel flushes after every cell).
    """

    def __init__(self, write, flush):
        self._write, self._flush, self._held = write, flush, ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            lines = (self._held + text).splitlines(keepends=True)
            self._held = ""
            if lines and not lines[-1].endswith(("\n", "\r")) and _MAYBE_LOG_LINE.match(lines[-1]):
                self._held = lines.pop()
            kept = "".join(line for line in lines if not is_harmless_log(line))
            if kept:
                self._write(kept)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            held, self._held = self._held, ""
            if held:
                self._write(held)
        self._flush()


def _filtered_class(base: type) -> type:
    """A subclass of the stream's class whose `write` goes through the stream's `_HarmlessLogFilter`.

    IPython tees `stream.write` around every cell (it saves the attribute, sets its own wrapper
    and puts the saved one back), so `write` is a property: a wrapper set by IPython is used
    while its cell runs, and putting back the class's own method restores the filter.
    """
    def get(self):
        return self.__dict__.get("_course_write") or self._course_log_filter.write

    def put(self, value):
        restored = value == self._course_log_filter.write or getattr(value, "__func__", None) is base.write
        self.__dict__["_course_write"] = None if restored else value

    return type(base.__name__, (base,), {"__module__": base.__module__, "write": property(get, put),
                                         "flush": lambda self: self._course_log_filter.flush()})


def filter_kernel_stderr(stream=None) -> bool:
    """In a Jupyter kernel that copies file descriptor 2 into cells, drop `is_harmless_log` lines there (once)."""
    stream = sys.stderr if stream is None else stream
    if not hasattr(stream, "watch_fd_thread") or hasattr(stream, "_course_log_filter"):
        return False  # not ipykernel's captured stderr (a terminal shows fd 2 directly), or already filtered
    base = type(stream)
    try:
        stream._course_log_filter = _HarmlessLogFilter(lambda text: base.write(stream, text),
                                                       lambda: base.flush(stream))
        stream.__class__ = _filtered_class(base)  # ipykernel's fd watcher calls self.write
    except (AttributeError, TypeError):  # an ipykernel whose stream takes no new attribute or class
        getattr(stream, "__dict__", {}).pop("_course_log_filter", None)
        return False
    stream.__dict__.pop("write", None)  # IPython's wrapper for the running cell: the property replaces it
    return True


@contextlib.contextmanager
def tensorflow_started():
    """For the block, drop TensorFlow's start-up noise from file descriptor 2, where its C++ code writes."""
    # fd 2 points at a temporary file for the block; every other line is written back to fd 2 at
    # its end. Jupyter's kernel copies fd 2 into the cell's output, so the setup cell shows what the
    # console does. A file, not a pipe: TF logs while importing with the GIL held, so a pipe read by
    # a Python thread could fill up and hang. (A hard crash inside the block loses its C++ message;
    # TF_CPP_MIN_LOG_LEVEL=0 turns the filter off.)
    if _every_message_asked():
        yield  # the learner asked for every message
        return
    _flush()
    try:
        tmp = tempfile.TemporaryFile()
        saved = os.dup(2)
    except OSError:  # no temporary folder or no fd 2 (e.g. pythonw): nothing to filter
        yield
        return
    os.dup2(tmp.fileno(), 2)
    try:
        yield
    finally:
        _flush()
        os.dup2(saved, 2)
        os.close(saved)
        tmp.seek(0)
        kept = drop_startup_noise(tmp.read().decode("utf-8", "replace"))
        tmp.close()
        if kept:
            os.write(2, kept.encode("utf-8"))


def start_tensorflow() -> None:
    """Import TensorFlow and query its devices once, quietly (see `tensorflow_started`)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", LOG_LEVEL)
    with tensorflow_started():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the cuInit attempt happens here, once per process


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def kernel_env(base=None) -> dict:
    """Environment for a kernel `course run` starts: TF's C++ log level set before anything imports TF."""
    env = dict(os.environ if base is None else base)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", LOG_LEVEL)
    return env


def kernel_config():
    """Kernel connection settings that avoid ipykernel's 'running over TCP without encryption' warning."""
    # CurveZMQ keys provisioned by jupyter_client (8.10 has them; kernelspec declaring "curve") where
    # pyzmq has Curve; else IPC sockets on Linux/macOS; else plain TCP (older ipykernels do not warn).
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    cfg = Config()
    if "transport_encryption" in KernelManager.class_trait_names() and zmq.has("curve") \
            and _spec_supports_curve("python3"):
        cfg.KernelManager.transport_encryption = "auto"
    elif os.name == "posix":
        cfg.KernelManager.transport = "ipc"
    return cfg


def _spec_supports_curve(kernel_name: str) -> bool:
    from jupyter_client.kernelspec import get_kernel_spec

    try:
        supported = get_kernel_spec(kernel_name).metadata.get("supported_encryption") or ()
    except Exception:  # noqa: BLE001 - no such kernelspec: nbclient reports that itself
        return False
    supported = [supported] if isinstance(supported, str) else supported
    return "curve" in {str(s).strip().lower() for s in supported}
