"""Course-specific errors with messages that say what was wrong and what to do."""

from __future__ import annotations

import contextlib

FIX_OFFLINE = (
    "Fix: connect this machine to the internet, or point the course at an offline mirror "
    "with `export COURSE_MIRROR=/path/to/course-mirror` (README, 'Offline route'); "
    "`course mirror check` lists what a mirror holds and `course mirror build DEST` makes one "
    "on a connected machine."
)


class MissingResourceError(RuntimeError):
    """A weight file or dataset is neither downloadable nor in the mirror."""


class BadImageError(ValueError):
    """A file that should be an image could not be decoded."""


def missing(what: str, name: str, detail: str = "") -> MissingResourceError:
    """Build the one clear message for a resource that cannot be had."""
    detail = f" {detail}" if detail else ""
    return MissingResourceError(f"Cannot get {what} ({name}).{detail} {FIX_OFFLINE}")


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
