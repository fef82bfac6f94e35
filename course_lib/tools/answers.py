"""The grading kernel's side of the judge: hand over an answer as data, call a submitted function.

Runs inside a submission's kernel, driven by `submission` (`course grade`, in the README's
instructor section); the tests themselves run in `judge`, a process that never runs student
code. Everything here runs in the student's process, so the submission may replace it: that
changes only what its own answers look like, never a verdict (the judge reads data only, see
`wire`).
"""

from __future__ import annotations

import json
import os
import tempfile

from course_lib.tools import wire

__all__ = ["export", "call"]

_REFS: dict[str, object] = {}


def _namespace() -> dict:
    try:
        return get_ipython().user_ns  # noqa: F821 - defined in an IPython kernel
    except NameError:
        import __main__
        return vars(__main__)


def _function(value) -> dict:
    """A reference to a callable, kept here so that the judge can call it later."""
    return {"t": "function", "ref": _ref(value), "name": str(getattr(value, "__name__", type(value).__name__))[:80]}


def _ref(value) -> str:
    """A name for a kernel object the judge may pass back to a submitted function."""
    ref = f"o{len(_REFS) + 1}"
    _REFS[ref] = value
    return ref


def _write(tree, folder: str, prefix: str) -> None:
    path = os.path.join(folder, f"{prefix}.json")
    with open(path + ".part", "w", encoding="utf-8") as f:
        f.write(wire.dumps(tree))
    os.replace(path + ".part", path)


def export(path: str, folder: str, prefix: str) -> None:
    """Write the answer `path` (a name, or `name.attribute...`) as `<folder>/<prefix>.json` and its files."""
    name, *attributes = path.split(".")
    space = _namespace()
    if name not in space:
        raise NameError(f"name {name!r} is not defined: run the cell that sets it")
    value = space[name]
    for attribute in attributes:
        value = getattr(value, attribute)
    _write(wire.encode(value, wire.Files(folder, prefix), functions=_function, refs=_ref), folder, prefix)


def _load_model(data: bytes):
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as f:
            f.write(data)
        return keras.saving.load_model(path, compile=False)


def _library(ref: str):
    """A function of the learners' library named `lib:module:qualname` (what a test builds in the kernel)."""
    import importlib

    _, module, qualname = ref.split(":")
    if not module.startswith("course_lib") or module.startswith("course_lib.tools"):
        raise ValueError(f"not a function of course_lib: {ref[:80]}")
    value = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


def call(ref: str, request: str, folder: str, prefix: str) -> None:
    """Call the function `ref` with the judge's arguments (`<folder>/<request>`); write its result like `export`.

    `ref` names a submitted function, or (`lib:module:qualname`) a course_lib function a test has the
    kernel run on its own objects (`judge`'s `in_kernel`).
    The result file also holds, for each positional argument that is a Keras model, the model as the
    call left it (a function may change a model in place, e.g. unfreeze layers).
    """
    files = wire.Files(folder, prefix)
    tree = json.loads(wire.Files(folder, "").read(request))
    decode = lambda t: wire.decode(t, wire.Files(folder, ""), functions=lambda f: _REFS[f["ref"]],  # noqa: E731
                                   load_model=_load_model)
    args = [decode(t) for t in tree["args"]]
    kwargs = {k: decode(t) for k, t in tree["kwargs"].items()}
    result = _library(ref)(*args, **kwargs) if ref.startswith("lib:") else _REFS[ref](*args, **kwargs)
    import keras

    after = [wire.encode(a, files, functions=_function, refs=_ref) if isinstance(a, keras.Model) else None
             for a in args]
    _write({"result": wire.encode(result, files, functions=_function, refs=_ref), "after": after}, folder, prefix)
