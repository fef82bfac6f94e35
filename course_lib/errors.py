"""Course-specific errors with messages that say what was wrong and what to do."""

from __future__ import annotations

import contextlib

__all__ = ["FIX_OFFLINE", "MissingResourceError", "CorruptResourceError", "FIX_CORRUPT", "BadImageError",
           "EmptySplitError", "SmallClassWarning", "missing", "read_failure", "corrupt", "explain_download",
           "network_available", "require_network"]

FIX_OFFLINE = (
    "Fix: connect this machine to the internet, or point the course at an offline mirror "
    "with `export COURSE_MIRROR=/path/to/course-mirror` (README, 'Offline route'); "
    "`course mirror check` lists what a mirror holds and `course mirror build DEST` makes one "
    "on a connected machine."
)


class MissingResourceError(RuntimeError):
    """A weight file or dataset is neither downloadable nor in the mirror."""


class CorruptResourceError(MissingResourceError):
    """A weight file or dataset is there but cannot be read (truncated, damaged, or the wrong file)."""


FIX_CORRUPT = (
    "Fix: the file is truncated or corrupt: re-copy it from the mirror source, or run "
    "`course mirror build DEST` on a connected machine to fetch it again, or unset COURSE_MIRROR "
    "when online (Keras then downloads the weights itself). `course mirror check` lists every "
    "damaged file of a mirror."
)


class BadImageError(ValueError):
    """A file that should be an image could not be decoded."""


class EmptySplitError(ValueError):
    """A split (train, val or test) with no images was given where images are needed."""


class SmallClassWarning(UserWarning):
    """A class has too few images for the split that was asked for."""


def missing(what: str, name: str, detail: str = "") -> MissingResourceError:
    """Build the one clear message for a resource that cannot be had."""
    detail = f" {detail}" if detail else ""
    return MissingResourceError(f"Cannot get {what} ({name}).{detail} {FIX_OFFLINE}")


def read_failure(exc: BaseException) -> str:
    """A short, plain reason for an exception raised while reading a file (h5py, zip, json)."""
    import re

    text = str(exc)
    cut = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
    if cut:
        return f"truncated: only {int(cut.group(1)):,} of its {int(cut.group(2)):,} bytes are there"
    if "file signature not found" in text:
        return "not an HDF5 file (h5py: file signature not found)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def corrupt(what: str, path, exc: BaseException) -> CorruptResourceError:
    """Build the one clear message for a file that is there but cannot be read."""
    return CorruptResourceError(f"Cannot read {what} from {path}: {read_failure(exc)}. {FIX_CORRUPT}")


def _looks_like_network_failure(exc: BaseException) -> bool:
    import urllib.error

    text = str(exc)
    return isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError)) or any(
        s in text for s in ("URL fetch failure", "Name or service not known",
                            "Temporary failure in name resolution", "Failed to establish",
                            "Network is unreachable", "Connection refused", "getaddrinfo")
    )


@contextlib.contextmanager
def explain_download(what: str, name: str):
    """Turn a bare network failure inside the block into one clear MissingResourceError."""
    try:
        yield
    except MissingResourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is a network failure
        if _looks_like_network_failure(exc) or _looks_like_network_failure(exc.__cause__ or exc):
            raise missing(what, name, "The download failed: no network.") from None
        raise


def network_available(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """True when a TCP connection to `host` opens within `timeout` seconds."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_network(url: str, what: str, name: str) -> None:
    """Fail at once, with the clear message, when `url`'s host cannot be reached."""
    import urllib.parse

    host = urllib.parse.urlparse(url).hostname or url
    if not network_available(host):
        raise missing(what, name, f"No network: {host} cannot be reached.")
