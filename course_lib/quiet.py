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
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import sys
import tempfile

LOG_LEVEL = "2"  # TF's C++ INFO and WARNING lines hidden, ERROR lines shown

_ABSL_HEADER = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called "
                          r"are written to STDERR")
_ONEDNN = re.compile(r"[IW]\d{4} \S+\s+\d+ port\.cc:\d+\] oneDNN custom operations are on\.")
_CUDA = re.compile(r"[IWE]\d{4} \S+\s+\d+ (cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"
                   r"|cuda_(platform|driver|diagnostics|executor)\.cc:\d+\] failed call to cuInit:)")


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


@contextlib.contextmanager
def tensorflow_started():
    """For the block, drop TensorFlow's start-up noise from file descriptor 2, where its C++ code writes."""
    # fd 2 points at a temporary file for the block; every other line is written back to fd 2 at
    # its end. Jupyter's kernel copies fd 2 into the cell's output, so the setup cell shows what the
    # console does. A file, not a pipe: TF logs while importing with the GIL held, so a pipe read by
    # a Python thread could fill up and hang. (A hard crash inside the block loses its C++ message;
    # TF_CPP_MIN_LOG_LEVEL=0 turns the filter off.)
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", LOG_LEVEL).strip() in ("", "0"):
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
