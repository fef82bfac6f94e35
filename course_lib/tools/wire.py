"""Answers as data between a grading kernel and the judge: a JSON tree plus `.npy` and `.keras` files.

Used by `answers` (in the student's kernel) and `judge` (the process that runs the tests,
`course grade`, in the README's instructor section). What travels, and what it becomes:

- None, bool, int, float, str: themselves (JSON);
- list, tuple, dict (keys of those scalar types), a set of those scalars: the same container, item
  by item; a generator:
  the list of what it yields (at most `MAX_ELEMENTS` items);
- a NumPy array or scalar, a TensorFlow tensor or variable: an `.npy` file, read back with
  `allow_pickle=False` (a tensor comes back as a tensor, a scalar as a NumPy scalar);
- a Keras model: a `.keras` file, loaded by the judge with `safe_mode=True`;
- another Keras layer: its config and weights, rebuilt with `safe_mode=True`;
- a Keras History: an object with its `history`, `params` and `epoch` as data; an EarlyStopping
  callback: one with the same settings and `best` (without its model);
- a `tf.data.Dataset`: its first `MAX_ELEMENTS` elements, as a dataset again;
- a course_lib dataclass (a profile, a split...): rebuilt from its fields (course_lib classes only);
- a function (any other callable): a reference the judge calls through the kernel (`judge.Remote`);
- a class of course_lib (`course_lib.tools.probes`): its name, imported where it arrives;
- anything else: an `Opaque` placeholder that says what it was and fails when a test uses it.

Every answer that is not a plain value or a container also carries a reference to the kernel's
object: passed back to a submitted function, it arrives there as that very object (a layer, a
dataset, the model itself), not as a copy.

Nothing a kernel sends is code the judge runs: files are read as regular files only (never
through a link), with a size cap, and never unpickled.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import os
import re
import stat
import types

__all__ = ["MAX_FILE_BYTES", "MAX_ELEMENTS", "MAX_DEPTH", "MAX_ITEMS", "MAX_TEXT", "WireError", "Opaque", "Files",
           "encode", "decode", "dumps", "loads"]

MAX_FILE_BYTES = 1 << 30  # one answer file (an array, a model)
MAX_ELEMENTS = 4096  # elements of a dataset
MAX_DEPTH = 32
MAX_ITEMS = 200_000  # items of all containers of one answer, together
MAX_TEXT = 64 << 20  # the JSON text of one answer
_EARLY_STOPPING = ("monitor", "patience", "restore_best_weights", "min_delta", "best", "stopped_epoch", "best_epoch",
                   "wait")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")


class WireError(ValueError):
    """An answer that cannot travel, or a message that does not follow the format."""


class Opaque:
    """An answer of a type that does not travel as data: every use of it fails, naming the type."""

    def __init__(self, type_name: str):
        self._type = str(type_name)[:200]

    def __repr__(self):
        return f"<a {self._type}, which the grader cannot read as data>"

    def __getattr__(self, name):
        raise TypeError(f"the answer is a {self._type}, which the grader cannot read (it reads numbers, strings, "
                        "lists, dicts, arrays, Keras models, datasets and functions)")


class Files:
    """The folder answer files are written to and read from (`prefix`: this message's file names)."""

    def __init__(self, folder, prefix: str):
        self.folder, self.prefix, self.count = str(folder), prefix, 0

    def write(self, suffix: str, data: bytes) -> str:
        """Write a new file of this message; its name. Never through a link, never over a file that exists."""
        import secrets

        self.count += 1
        name = f"{self.prefix}-{self.count}-{secrets.token_hex(4)}{suffix}"
        folder = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=folder)  # the kernel reads it
        finally:
            os.close(folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return name

    def read(self, name: str, limit: int = MAX_FILE_BYTES) -> bytes:
        """A file's bytes: a regular file in the folder (no link followed), at most `limit` bytes."""
        if not isinstance(name, str) or not _NAME.match(name) or name.startswith("."):
            raise WireError(f"an answer names the file {str(name)[:80]!r}: expected a plain file name")
        folder = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
        except OSError as exc:
            raise WireError(f"the answer file {name} cannot be read ({type(exc).__name__})") from None
        finally:
            os.close(folder)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise WireError(f"the answer file {name} is not a regular file")
            if info.st_size > limit:
                raise WireError(f"the answer file {name} holds {info.st_size:,} bytes; at most {limit:,}")
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(limit + 1)
        finally:
            os.close(fd)
        if len(data) > limit:
            raise WireError(f"the answer file {name} grew past {limit:,} bytes")
        return data


def _module(name: str):
    import sys
    return sys.modules.get(name)


def encode(value, files: Files, *, functions, refs=None, known=None, depth: int = 0, budget=None) -> dict:
    """The tree of `value` (see the module doc); `functions(callable) -> dict` encodes a callable.

    `refs(value) -> str` names the kernel's object for an answer that is not a plain value; `known(value)`
    gives the reference of an object that came from the kernel (it goes back as that reference).
    """
    ref = known(value) if known is not None and value is not None and type(value) not in (bool, int, float, str) \
        else None
    if ref is not None:
        return {"t": "kref", "ref": ref}
    tree = _encode(value, files, functions=functions, refs=refs, known=known, depth=depth, budget=budget)
    if refs is not None and tree["t"] not in ("value", "list", "tuple", "dict", "set", "function"):
        tree["ref"] = refs(value)
    return tree


def _encode(value, files: Files, *, functions, refs, known, depth: int, budget) -> dict:
    budget = budget if budget is not None else [MAX_ITEMS]
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise WireError(f"the answer is too large or too deeply nested (over {MAX_ITEMS:,} items or "
                        f"{MAX_DEPTH} levels)")
    sub = lambda v: encode(v, files, functions=functions, refs=refs, known=known,  # noqa: E731
                           depth=depth + 1, budget=budget)
    if value is None or type(value) in (bool, int, float, str):
        return {"t": "value", "v": value}
    if type(value) in (list, tuple):
        return {"t": type(value).__name__, "items": [sub(v) for v in value]}
    if isinstance(value, types.GeneratorType):  # what a generator yields, as a list (at most MAX_ELEMENTS)
        return {"t": "list", "items": [sub(v) for _, v in zip(range(MAX_ELEMENTS), value)]}
    if type(value) is dict:
        return {"t": "dict", "items": [[sub(k), sub(v)] for k, v in value.items()]}
    if type(value) in (set, frozenset) and all(type(v) in (bool, int, float, str) for v in value):
        return {"t": "set", "items": [sub(v) for v in sorted(value, key=repr)]}
    np, tf, keras = _module("numpy"), _module("tensorflow"), _module("keras")
    if np is not None and isinstance(value, (np.ndarray, np.generic)):
        return _array(np.asarray(value), files, {"scalar": isinstance(value, np.generic)})
    if tf is not None and isinstance(value, (tf.Tensor, tf.Variable)) and not isinstance(value, type):
        return _array(np.asarray(value.numpy()), files, {"tensor": True})
    if keras is not None and isinstance(value, keras.Model):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="course_wire_") as tmp:  # a private folder, then copied
            path = os.path.join(tmp, "model.keras")
            value.save(path)
            with open(path, "rb") as f:
                return {"t": "model", "file": files.write(".keras", f.read())}
    if keras is not None and isinstance(value, keras.layers.Layer):
        return {"t": "layer", "config": json.loads(json.dumps(keras.saving.serialize_keras_object(value))),
                "weights": [sub(np.asarray(w)) for w in value.get_weights()]}
    if keras is not None and type(value) is keras.callbacks.EarlyStopping:
        return {"t": "early_stopping", "fields": {k: sub(getattr(value, k, None)) for k in _EARLY_STOPPING}}
    if keras is not None and isinstance(value, keras.callbacks.History):
        return {"t": "history", "history": sub(dict(value.history)), "params": sub(dict(value.params or {})),
                "epoch": sub(list(value.epoch))}
    if tf is not None and isinstance(value, tf.data.Dataset):
        elements = [e for _, e in zip(range(MAX_ELEMENTS), value.as_numpy_iterator())]
        return {"t": "dataset", "items": [sub(e) for e in elements]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type) \
            and type(value).__module__.startswith("course_lib."):
        return {"t": "object", "class": f"{type(value).__module__}:{type(value).__qualname__}",
                "fields": {f.name: sub(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, type) and value.__module__.startswith("course_lib."):
        return {"t": "class", "class": f"{value.__module__}:{value.__qualname__}"}
    if callable(value) and not isinstance(value, type):
        return functions(value)
    return {"t": "opaque", "type": f"{type(value).__module__}.{type(value).__qualname__}"}


def _array(array, files: Files, extra: dict) -> dict:
    if array.dtype.hasobject:
        raise WireError("the answer is an array of Python objects: give an array of numbers (or strings)")
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return {"t": "array", "file": files.write(".npy", buffer.getvalue()), **extra}


def decode(tree, files: Files, *, functions, load_model=None, on_ref=None, depth: int = 0):
    """The value a tree stands for; `functions(tree)` decodes a function or a reference (`kref`),
    `load_model(bytes)` a model; `on_ref(ref, value)` hears of every value that names its kernel object."""
    value = _decode(tree, files, functions=functions, load_model=load_model, on_ref=on_ref, depth=depth)
    if on_ref is not None and isinstance(tree.get("ref"), str):
        on_ref(tree["ref"], value)
    return value


def _decode(tree, files: Files, *, functions, load_model, on_ref, depth: int):
    if depth > MAX_DEPTH or not isinstance(tree, dict):
        raise WireError("a message does not follow the answer format")
    sub = lambda t: decode(t, files, functions=functions, load_model=load_model, on_ref=on_ref,  # noqa: E731
                           depth=depth + 1)
    kind = tree.get("t")
    if kind == "value":
        value = tree.get("v")
        if value is not None and type(value) not in (bool, int, float, str):
            raise WireError("a message does not follow the answer format (value)")
        return value
    if kind in ("list", "tuple"):
        items = [sub(t) for t in _list(tree.get("items"))]
        return items if kind == "list" else tuple(items)
    if kind == "set":
        items = [sub(t) for t in _list(tree.get("items"))]
        if not all(type(v) in (bool, int, float, str) for v in items):
            raise WireError("a set of something other than numbers and strings")
        return set(items)
    if kind == "dict":
        out = {}
        for pair in _list(tree.get("items")):
            key, value = _list(pair)
            key = sub(key)
            if not isinstance(key, (str, int, float, bool, tuple, type(None))):
                raise WireError("a dict key that is not a scalar")
            out[key] = sub(value)
        return out
    if kind == "array":
        import numpy as np

        array = np.load(io.BytesIO(files.read(tree.get("file"))), allow_pickle=False)
        if tree.get("tensor"):
            import tensorflow as tf
            return tf.constant(array)
        return array[()] if tree.get("scalar") else array
    if kind == "model":
        if load_model is None:
            raise WireError("a model where none was expected")
        return load_model(files.read(tree.get("file")))
    if kind == "layer":
        return _layer(tree.get("config"), [sub(t) for t in _list(tree.get("weights"))])
    if kind == "early_stopping":
        import keras

        fields = {str(k): sub(v) for k, v in dict(tree.get("fields")).items() if k in _EARLY_STOPPING}
        stop = keras.callbacks.EarlyStopping(**{k: fields[k] for k in ("monitor", "patience", "restore_best_weights",
                                                                         "min_delta") if k in fields})
        for key in ("best", "stopped_epoch", "best_epoch", "wait"):
            setattr(stop, key, fields.get(key))
        return stop
    if kind == "history":
        import types
        return types.SimpleNamespace(history=sub(tree.get("history")), params=sub(tree.get("params")),
                                     epoch=sub(tree.get("epoch")))
    if kind == "dataset":
        return _dataset([sub(t) for t in _list(tree.get("items"))])
    if kind == "class":
        return _course_class(str(tree.get("class")))
    if kind == "object":
        return _course_object(str(tree.get("class")), {str(k): sub(v) for k, v in dict(tree.get("fields")).items()})
    if kind in ("function", "kref"):
        return functions(tree)
    if kind == "opaque":
        return Opaque(str(tree.get("type")))
    raise WireError(f"a message does not follow the answer format (kind {str(kind)[:40]!r})")


def _layer(config, weights: list):
    """A Keras layer rebuilt from its config (`safe_mode`: no code in it runs), with its weights."""
    import keras

    try:
        layer = keras.saving.deserialize_keras_object(config, safe_mode=True)
        if weights:
            layer.set_weights(weights)
    except Exception as exc:  # noqa: BLE001 - a layer the judge cannot rebuild is the answer's problem
        raise WireError(f"a Keras layer could not be rebuilt safely ({type(exc).__name__}: {str(exc)[:200]})") from None
    return layer


def _list(value) -> list:
    if not isinstance(value, list):
        raise WireError("a message does not follow the answer format (list)")
    return value


def _dataset(elements: list):
    """A tf.data.Dataset of these elements (in order)."""
    import tensorflow as tf

    if not elements:
        return tf.data.Dataset.from_tensor_slices([])
    out = tf.data.Dataset.from_tensors(elements[0])
    for element in elements[1:]:
        out = out.concatenate(tf.data.Dataset.from_tensors(element))
    return out


def _course_class(qualified: str) -> type:
    """A class of course_lib named `module:qualname` (no other class is ever imported)."""
    module_name, _, qualname = qualified.partition(":")
    if not module_name.startswith("course_lib.") or not re.fullmatch(r"[\w.]+", module_name + qualname):
        raise WireError(f"the class {qualified[:80]!r}: only course_lib's own classes travel")
    try:
        cls = importlib.import_module(module_name)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError):  # a name course_lib does not have: the answer's problem
        raise WireError(f"{qualified[:80]} is not a class of course_lib") from None
    if not isinstance(cls, type):
        raise WireError(f"{qualified[:80]} is not a class")
    return cls


def _course_object(qualified: str, fields: dict):
    """A course_lib dataclass instance rebuilt from its fields (no other class is ever instantiated)."""
    cls = _course_class(qualified)
    if not dataclasses.is_dataclass(cls):
        raise WireError(f"{qualified[:80]} is not one of course_lib's data classes")
    obj = object.__new__(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key, value in fields.items():
        if key in known:
            object.__setattr__(obj, key, value)
    return obj


def dumps(tree) -> str:
    """A tree as JSON text."""
    return json.dumps(tree)


def loads(text: str):
    """A tree from JSON text (at most MAX_TEXT characters)."""
    if len(text) > MAX_TEXT:
        raise WireError(f"an answer's description is over {MAX_TEXT:,} characters")
    return json.loads(text)
