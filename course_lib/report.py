"""Key metrics and executable claims, recorded for the run report.

Taught in `00_setup`. `metric()` prints a value under a stable name
(`<notebook>.<name>`); `claim()` asserts a lesson's claim. When the course runner starts the
notebook's kernel with `COURSE_METRICS_FILE` (`METRICS_ENV`) in its environment, both are also
appended to that file as JSON lines.
"""

from __future__ import annotations

import json
import math
import os

from course_lib import config

__all__ = ["METRICS_ENV", "start", "full_name", "metric", "claim", "read"]

METRICS_ENV = "COURSE_METRICS_FILE"  # set in a kernel's environment by its runner, never by this process
_STATE = {"notebook": "notebook"}


def start(notebook: str) -> None:
    """Name the notebook whose metrics follow (called by `cl.setup`)."""
    _STATE["notebook"] = notebook


def full_name(name: str) -> str:
    """The stable report key for a metric of the current notebook."""
    return f"{_STATE['notebook']}.{name}"


def metric(name: str, value, fmt: str = ".4g"):
    """Print and record a key metric under a stable name; returns the value."""
    number = float(value)
    print(f"[metric] {full_name(name)} = {number:{fmt}}")
    _append({"type": "metric", "name": full_name(name),
             "value": number if math.isfinite(number) else str(number)})
    return value


def claim(name: str, ok, detail: str = "", *, mechanics: bool = False) -> None:
    """Assert one of the lesson's claims; print and record whether it held.

    Under a reduced budget (`COURSE_BUDGET`) a claim about a measured result is recorded, not
    judged; a claim about the mechanics (`mechanics=True`: it holds on any data and budget, e.g.
    a reloaded model predicts exactly like the trained one) is always judged.
    """
    ok = bool(ok)
    judged = mechanics or not config.get_budget().reduced
    verdict = ("PASS" if ok else "FAIL") if judged else f"not judged, reduced budget ({'held' if ok else 'did not hold'})"
    print(f"[claim] {verdict}: {name}" + (f" ({detail})" if detail else ""))
    _append({"type": "claim", "name": full_name(name), "passed": ok, "judged": judged, "detail": detail})
    if judged and not ok:
        raise AssertionError(f"The lesson's claim did not hold: {name}. {detail}")


def _append(record: dict) -> None:
    path = os.environ.get(METRICS_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read(path) -> list[dict]:
    """Read the records a notebook run appended to a metrics file."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
