"""The judge's libraries: TensorFlow imported when a test first uses it, and seeded then (`judge`).

A test sees `cl`, `keras` and `tf` as `Lazy` names: TensorFlow is imported (`load`) on first use (`cl.quiz`
and `cl.stats` do not use it), before a test that imports one of them runs (`imports_them`), or
before an answer that holds a model, a layer, a dataset or a tensor is decoded (`holds_tensorflow`).
The import has address space of its own above the answers' limit (`IMPORT_HEADROOM`), and
TensorFlow is seeded as the start of the case would have seeded it (`reseed`), so a test draws the
same numbers whether TensorFlow was loaded before it or during it.
"""

from __future__ import annotations

import ast
import sys

__all__ = ["IMPORT_HEADROOM", "Unavailable", "Lazy", "holds_tensorflow", "imports_them", "load", "reseed"]

IMPORT_HEADROOM = 4 << 30  # address space above the answers' limit, for TensorFlow's import (it maps 1.8 GiB here)
_NO_TENSORFLOW = ("quiz", "stats")  # the course_lib modules the tests use that never import TensorFlow
_TENSORFLOW_KINDS = ("model", "layer", "early_stopping", "dataset", "class", "object")  # wire kinds that load it


class Unavailable(RuntimeError):
    """Keras or TensorFlow cannot be imported in the judge: the grading machine's failure, never the answer's."""


def holds_tensorflow(tree) -> bool:
    """Whether decoding an answer's tree loads TensorFlow (a model, a layer, a dataset, a tensor, a course class)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            if node.get("t") in _TENSORFLOW_KINDS or node.get("t") == "array" and node.get("tensor"):
                return True
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return False


def imports_them(code: str) -> bool:
    """Whether a test imports Keras, TensorFlow or course_lib itself (03's probe layer: that may load TensorFlow)."""
    for node in ast.walk(ast.parse(code)):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n.split(".")[0] in ("keras", "tensorflow", "course_lib") for n in names):
            return True
    return False


class Lazy:
    """`cl`, `keras` or `tf` as a test sees them: TensorFlow is imported, and seeded, when first used."""

    def __init__(self, name: str, seed: int):
        self._name, self._seed = name, seed

    def __getattr__(self, attr: str):
        if self._name == "cl":
            import course_lib

            if attr not in _NO_TENSORFLOW:
                load(self._seed)
            return getattr(course_lib, attr)
        keras, tf = load(self._seed)
        return getattr(keras if self._name == "keras" else tf, attr)

    def __repr__(self):
        return f"<the judge's {self._name}>"


def load(seed: int):
    """(keras, tensorflow), imported on first need and seeded as `reseed` did at the case's start (`Unavailable`)."""
    # in the address space kept for it (IMPORT_HEADROOM: the answers read so far never make the import fail);
    # TensorFlow seeded before any of its random operations, Python's and NumPy's random states left as they are
    if "keras" not in sys.modules:
        import random
        import resource

        import numpy as np

        from course_lib import session

        states = random.getstate(), np.random.get_state()
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        try:
            session.set_seed(seed)  # imports Keras and TensorFlow
        except ImportError as exc:
            raise Unavailable(f"the judge cannot import its libraries ({type(exc).__name__}: {exc})"[:300]) from None
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))  # below what is mapped now, maybe: no new maps
        random.setstate(states[0])
        np.random.set_state(states[1])
    import keras
    import tensorflow as tf

    return keras, tf


def reseed(seed: int) -> None:
    """Seed Python and NumPy, and TensorFlow (deterministic ops) once it is loaded: `cl.session.set_seed`."""
    if "keras" in sys.modules:
        from course_lib import session

        session.set_seed(seed)
    else:
        import random

        import numpy as np

        random.seed(seed)
        np.random.seed(seed)
