"""Output folders the `course` commands own: never a file they did not write, replaced atomically.

A command writes only into an `--out` folder that is new, empty, or one it wrote before; it
recognises its own folders by the marker file `MARKER` it leaves there, which lists the
top-level names it wrote. The new output is built in a hidden sibling folder and then swapped
in with two renames, so a command that fails or is stopped leaves the previous output whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil

__all__ = ["MARKER", "OutputFolderError", "read_marker", "check", "staged", "commit", "adopt"]

MARKER = ".course-output.json"


class OutputFolderError(ValueError):
    """An --out folder a command may not write into: a file, foreign files, or not writable."""


def _fix(option: str) -> str:
    return f"Fix: pass {option} a new or empty folder, or one this command wrote before."


def read_marker(out: pathlib.Path) -> dict | None:
    """The marker of a folder a `course` command wrote ({command, names}), or None."""
    try:
        doc = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(doc, dict) and isinstance(doc.get("command"), str) and isinstance(doc.get("names"), list)
    return doc if ok else None


def check(out, command: str, *, option: str = "--out") -> pathlib.Path:
    """Refuse `out` unless it is new, empty, or was written by `course <command>` and holds nothing else."""
    out = pathlib.Path(out).expanduser().absolute()
    received = f"Received: {option} {out}"
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"`course {command}` writes a folder, but {out} is a file. {received}. {_fix(option)}")
    if not out.exists():
        _check_parent(out, command, received, option)
        return out
    names = sorted(p.name for p in out.iterdir() if p.name != ".git")
    if not names:
        return out
    marker = read_marker(out)
    if marker is None or marker["command"] != command:
        who = f"`course {marker['command']}`" if marker else "someone else"
        raise OutputFolderError(
            f"{out} is not empty and holds no output that `course {command}` wrote (no {MARKER} of "
            f"its own; written by {who}): it holds {_some(names)}. {received}. Nothing was changed. "
            f"{_fix(option)}")
    foreign = [n for n in names if n not in marker["names"] and n != MARKER]
    if foreign:
        raise OutputFolderError(
            f"{out} holds files that `course {command}` did not write: {_some(foreign)}. {received}. "
            f"Nothing was changed. Fix: move them elsewhere, or pass {option} another folder.")
    return out


def _check_parent(out: pathlib.Path, command: str, received: str, option: str) -> None:
    parent = next(p for p in out.parents if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputFolderError(f"`course {command}` cannot create {out}: {parent} is not a writable "
                                f"folder. {received}. Fix: pass {option} a folder you can write to.")


def _some(names: list, limit: int = 5) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


@contextlib.contextmanager
def staged(out, command: str, *, option: str = "--out", keep: tuple = ()):
    """Yield a fresh folder to write into; on success it replaces `out` at once (the old one if the block fails).

    `keep`: top-level names of the previous output carried into the new one when absent there.
    """
    out = check(out, command, option=option)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = out.parent / f".{out.name}.partial-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
    except OSError as exc:
        raise OutputFolderError(f"`course {command}` cannot write to {out.parent}: {exc.strerror or exc}. "
                                f"Received: {option} {out}. Fix: pass {option} a folder you can write to.") from None
    try:
        yield stage
        _carry(out, stage, keep)
        commit(stage, out, command)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _carry(out: pathlib.Path, stage: pathlib.Path, keep: tuple) -> None:
    for name in keep:
        if (out / name).exists() and not (stage / name).exists():
            os.replace(out / name, stage / name)


def commit(stage: pathlib.Path, out: pathlib.Path, command: str) -> None:
    """Write the marker into `stage`, then swap it in for `out` (two renames; the old output is removed)."""
    names = sorted(p.name for p in stage.iterdir() if p.name != MARKER)
    (stage / MARKER).write_text(json.dumps({"command": command, "names": names}, indent=1) + "\n", encoding="utf-8")
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        git = out / ".git"
        if git.exists():
            os.replace(git, stage / ".git")
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)


def adopt(out, command: str, name: str) -> None:
    """Record `name` (written into `out` by another step) in `out`'s marker, so the next run may replace it."""
    out = pathlib.Path(out)
    marker = read_marker(out)
    if marker and marker["command"] == command and name not in marker["names"]:
        marker["names"] = sorted([*marker["names"], name])
        (out / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
