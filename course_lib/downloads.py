"""Every download the course makes, through `keras.utils.get_file`, with its checksum checked.

Taught in `00_setup` (online and offline routes). Used by `data_sources` (datasets without a
TFDS entry), `data` (USPS) and `mirror_build`. Keras writes the file, verifies a pinned
sha256 or md5 and extracts archives with unsafe paths filtered (on every Python the course
supports); this module adds the course's clear errors and keeps no damaged file.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

from course_lib import errors

__all__ = ["fetch", "hash_of"]


def fetch(url: str, dest: os.PathLike, file_hash: str | None = None, *,
          extract: bool = False) -> pathlib.Path:
    """Download `url` to `dest` once (sha256 or md5 checked when pinned); extract it if asked.

    Returns `dest`, or the folder Keras extracted the archive into (`<dest stem>_extracted`).
    """
    import keras

    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with errors.explain_download("a download", url):
        try:
            path = keras.utils.get_file(fname=dest.name, origin=url, file_hash=file_hash,
                                        cache_dir=str(dest.parent), cache_subdir="", extract=extract)
        except ValueError as exc:
            if "hash does not match" not in str(exc):
                raise
            got = hash_of(dest, like=file_hash)
            dest.unlink(missing_ok=True)
            raise errors.MissingResourceError(
                f"Checksum mismatch for {url}: expected {file_hash}, got {got}. The download is "
                "damaged or the source changed; nothing was kept. Fix: try again; if it fails "
                "again, the source changed: report it to the course.") from None
    if not file_hash:
        print(f"note: {url} has no pinned checksum; its sha256 is {hash_of(dest)}")
    return pathlib.Path(path)


def hash_of(path: os.PathLike, like: str | None = None) -> str:
    """The file's sha256, or its md5 when `like` is an md5 (32 hex digits)."""
    if not pathlib.Path(path).is_file():
        return "nothing"
    digest = hashlib.md5() if like and len(like) == 32 else hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
