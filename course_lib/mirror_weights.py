"""`course mirror check`'s weights check: each weights file against the model it is for (layers, shapes)."""

from __future__ import annotations

import pathlib

__all__ = ["WEIGHT_MODELS", "file_shapes", "expected", "mismatch"]

# Mirror resource -> (backbone, with the ImageNet top), at the 224 input size the mirror holds.
WEIGHT_MODELS = {"mobilenet_v2@224": ("mobilenet_v2", False), "mobilenet@224": ("mobilenet", False),
                 "mobilenet_top@224": ("mobilenet", True)}


def file_shapes(path) -> list[list[tuple]]:
    """The weight shapes of each layer with weights, in order, from a Keras HDF5 weights file."""
    import h5py

    with h5py.File(path, "r") as f:
        group = f["model_weights"] if "model_weights" in f else f
        out = []
        for name in group.attrs.get("layer_names", []):
            layer = group[name.decode() if isinstance(name, bytes) else name]
            weights = [w.decode() if isinstance(w, bytes) else w for w in layer.attrs.get("weight_names", [])]
            if weights:
                out.append([tuple(layer[w].shape) for w in weights])
        return out


def expected(key: str) -> list[list[tuple]]:
    """The stored weight shapes of `key`'s model (`weight_shapes`; no Keras import, so the check stays fast)."""
    import json

    from course_lib import weight_shapes

    return [[tuple(s) for s in layer] for layer in json.loads(weight_shapes.SHAPES[key])]


def mismatch(path: pathlib.Path, key: str) -> str:
    """Why the weights file `path` does not fit the model of `key` ("" when every layer fits)."""
    if key not in WEIGHT_MODELS:
        return ""
    have, want = file_shapes(path), expected(key)
    name, top = WEIGHT_MODELS[key]
    model = f"{name}{' with its ImageNet top' if top else ''}"
    if len(have) != len(want):
        return (f"not the weights of {model}: the file has {len(have)} layers with weights, "
                f"the model {len(want)} (a file of another model, or another version)")
    for i, (h, w) in enumerate(zip(have, want)):
        if h != w:
            return f"not the weights of {model}: layer {i} with weights has shapes {h} in the file, {w} in the model"
    return ""
