"""Odd files in a folder of submissions, made at test time: each is skipped or errored alone, and the batch goes on.

Used by `test_grading.py` (a fast batch with a stand-in grader) and `batch_00.py` (the real graded batch,
where they lie beside the solved 00 notebook). `write` returns what each one's status starts with.
"""

import json
import os
import stat

__all__ = ["LONG", "write"]

LONG = "/".join(["feedback" * 11] * 3) + ".ipynb"  # 272 characters: too long for one file name


def write(folder, target) -> dict[str, str]:
    """Write the odd files into `folder` beside `target` (a notebook in it); {submission: its status's start}."""
    expected = {}
    os.mkfifo(folder / "pipe.ipynb")  # reading it would wait forever for a writer
    expected["pipe.ipynb"] = "skipped: a FIFO (named pipe), not a regular file"
    (folder / "link.ipynb").symlink_to(target)  # would take another's grade
    expected["link.ipynb"] = "skipped: a symbolic link, not a regular file"
    (folder / "linked_folder").symlink_to(target.parent, target_is_directory=True)
    expected["linked_folder"] = "skipped: a symbolic link, not a regular file"
    try:
        os.mknod(folder / "null.ipynb", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's device
        expected["null.ipynb"] = "skipped: a device, not a regular file"
    except PermissionError:  # only root makes devices
        pass
    depth = 100_000
    (folder / "deep.ipynb").write_text("[" * depth + "]" * depth)  # RecursionError in json
    expected["deep.ipynb"] = "error: not a notebook: its JSON nests deeper than any notebook does"
    plain = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})  # not a course notebook
    (folder / LONG).parent.mkdir(parents=True)
    (folder / LONG).write_text(plain)
    expected[LONG] = "skipped: not a course notebook"
    flat = target.relative_to(folder).as_posix().replace("/", "__")  # alice/00_setup.ipynb: alice__00_setup.ipynb
    (folder / flat).write_text(plain)
    expected[flat] = "skipped: not a course notebook"
    (folder / '=HYPERLINK("example.com";"prize").ipynb').write_text(plain)
    expected['=HYPERLINK("example.com";"prize").ipynb'] = "skipped: not a course notebook"
    return expected
