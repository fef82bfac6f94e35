"""A registry of Keras Applications backbones, and a loader that works online or offline.

Taught in `01_pretrained_backbones` (and used by every later notebook).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re

from course_lib import errors, mirror, scale

__all__ = ["BackboneSpec", "REGISTRY", "names", "get", "load", "load_classifier", "weight_sizes", "blocks",
           "block_names", "param_count", "decode_predictions"]


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """What the course knows about one `keras.applications` architecture."""

    name: str
    constructor: str  # attribute of keras.applications
    module: str  # keras.applications submodule holding preprocess_input
    feature_dim: int  # channels of the pooled output (include_top=False)
    default_size: int
    native_sizes: tuple  # sizes that have their own ImageNet weights (others reuse default_size's)
    block_pattern: str  # regex; group(1) names the block a layer belongs to (see block_label)
    top_name: str  # name given to layers after the last block (the head convolution)
    weight_file: str  # Keras' file name for the no-top weights; {rows} and {alpha} are filled in
    top_weight_file: str = ""  # file name for the weights with the 1000-class ImageNet top
    kwargs: tuple = ()  # extra constructor arguments, as (key, value) pairs
    family: str = ""
    min_size: int = 32
    block_label: str = "{}"  # how a block is named from the pattern's group(1)

    def weights_filename(self, image_size: int, include_top: bool = False) -> str:
        """The file Keras fetches for `weights="imagenet"` at this input size."""
        rows = image_size if image_size in self.native_sizes else self.default_size
        return (self.top_weight_file if include_top else self.weight_file).format(rows=rows)

    @property
    def preprocess_input(self):
        """This backbone's own `preprocess_input` function (expects pixels in [0, 255])."""
        return importlib.import_module(f"keras.applications.{self.module}").preprocess_input


REGISTRY = {
    spec.name: spec
    for spec in [
        BackboneSpec(
            "mobilenet_v2", "MobileNetV2", "mobilenet_v2", 1280, 224, (96, 128, 160, 192, 224),
            r"^(expanded_conv|block_\d+)_", "Conv_1",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}.h5",
            (("alpha", 1.0),), "MobileNet",
        ),
        BackboneSpec(
            "mobilenet", "MobileNet", "mobilenet", 256, 224, (128, 160, 192, 224),
            r"^conv_(?:dw|pw)_(\d+)(?:_|$)", "top",
            "mobilenet_2_5_{rows}_tf_no_top.h5", "mobilenet_2_5_{rows}_tf.h5",
            (("alpha", 0.25),), "MobileNet", block_label="conv_block_{}",
        ),
        BackboneSpec(
            "efficientnet_b0", "EfficientNetB0", "efficientnet", 1280, 224, (),
            r"^(block\d[a-z])_", "top_conv", "efficientnetb0_notop.h5", "efficientnetb0.h5", (), "EfficientNet",
        ),
        BackboneSpec(
            "resnet50", "ResNet50", "resnet50", 2048, 224, (),
            r"^(conv\d_block\d+)_", "top",
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5", (), "ResNet",
        ),
        BackboneSpec(
            "mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", 576, 224, (),
            r"^(expanded_conv(?:_\d+)?)_", "Conv_1",
            "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
            "weights_mobilenet_v3_small_224_1.0_float.h5", (), "MobileNet",
        ),
    ]
}


def names() -> list[str]:
    """The backbone names the course knows."""
    return sorted(REGISTRY)


def get(name: str) -> BackboneSpec:
    """Look up a backbone by name, with a Keras-style error for unknown names."""
    key = str(name).lower().replace("-", "_")
    if key not in REGISTRY:
        raise ValueError(
            f"Unknown backbone. Received: name={name!r}. "
            f"Valid names: {', '.join(names())}."
        )
    return REGISTRY[key]


def load(name: str, image_size: int = 224, *, weights: str | None = "imagenet",
         pooling: str | None = "avg", trainable: bool = False):
    """Build a headless backbone with ImageNet weights (online, or from the mirror)."""
    spec = get(name)
    image_size = _check_size(spec, image_size)
    kwargs = dict(spec.kwargs, include_top=False, pooling=pooling,
                  input_shape=(image_size, image_size, 3))
    if weights == "imagenet":
        weights = mirror.weights_path(spec, image_size) or "imagenet"
    what = f"the ImageNet weights of {spec.constructor}"
    _check_weights_file(what, weights)  # fails fast, before Keras is even imported
    import keras

    ctor = getattr(keras.applications, spec.constructor)
    with scale.scope(), errors.explain_download(what, spec.weights_filename(image_size)):
        model = _build(ctor, what, weights, **kwargs)
    model.trainable = trainable
    return model


def load_classifier(name: str, image_size: int = 224):
    """Build the full ImageNet classifier (with its 1000-class top) for predictions."""
    import keras

    spec = get(name)
    if spec.native_sizes and image_size not in spec.native_sizes:
        raise ValueError(
            f"The ImageNet classifier of {spec.name} needs one of its native sizes. "
            f"Received: image_size={image_size!r}. Allowed: {list(spec.native_sizes)}."
        )
    ctor = getattr(keras.applications, spec.constructor)
    weights = mirror.weights_path(spec, image_size, include_top=True) or "imagenet"
    what = f"the ImageNet classifier weights of {spec.constructor}"
    _check_weights_file(what, weights)
    with scale.scope(), errors.explain_download(what, spec.weights_filename(image_size, include_top=True)):
        return _build(ctor, what, weights,
                      include_top=True, input_shape=(image_size, image_size, 3), **dict(spec.kwargs))


def _check_weights_file(what: str, weights) -> None:
    """Open an HDF5 weights file and list its root: cheap; a damaged file raises the clear error."""
    if weights in ("imagenet", None) or not str(weights).endswith(".h5") or not os.path.isfile(weights):
        return
    import h5py

    try:
        with h5py.File(weights, "r") as f:
            list(f.keys())
    except (OSError, ValueError) as exc:  # h5py: truncated file, file signature not found, ...
        raise errors.corrupt(what, weights, exc) from exc


def _build(ctor, what: str, weights, **kwargs):
    """Build with `ctor`; a weights file that cannot be read raises the course's clear error."""
    if weights in ("imagenet", None) or not os.path.isfile(weights):
        return ctor(weights=weights, **kwargs)  # Keras downloads, or explains a bad argument
    model = ctor(weights=None, **kwargs)  # what Keras does for a path: build, then load_weights
    try:
        model.load_weights(weights)
    except (OSError, ValueError, KeyError) as exc:  # h5py/Keras failing to read the file
        raise errors.corrupt(what, weights, exc) from exc
    return model


def _check_size(spec: BackboneSpec, image_size) -> int:
    from course_lib import config

    size = config.as_int(image_size)  # Python or NumPy integers (not bools), as a Python int
    if size is None or size < spec.min_size:
        raise ValueError(
            f"image_size must be an integer >= {spec.min_size} for {spec.name}. "
            f"Received: image_size={image_size!r}. Fix: pass a whole number of pixels, e.g. "
            f"{spec.default_size}."
        )
    return size


def weight_sizes(name: str) -> dict:
    """Which input sizes have their own ImageNet weights, and which work offline now."""
    spec = get(name)
    native = list(spec.native_sizes) or ["any (weights do not depend on the input size)"]
    offline = mirror.offline_sizes(spec)
    return {"native": native, "offline": offline}


def blocks(model, name: str) -> list[tuple[str, list]]:
    """Group a backbone's layers into its named blocks, bottom to top."""
    spec = get(name)
    pattern = re.compile(spec.block_pattern)
    groups: list[tuple[str, list]] = []
    seen_block = False
    for layer in model.layers:
        if not layer.weights:
            continue
        match = pattern.match(layer.name)
        if match:
            key, seen_block = spec.block_label.format(match.group(1)), True
        elif seen_block:
            key = spec.top_name
        else:
            key = "stem"
        if not groups or groups[-1][0] != key:
            groups.append((key, []))
        groups[-1][1].append(layer)
    return [g for g in groups if g[0] != "stem"]


def block_names(model, name: str) -> list[str]:
    """The names of a backbone's unfreezable blocks, bottom to top."""
    return [key for key, _ in blocks(model, name)]


def param_count(layers_or_model, trainable_only: bool = False) -> int:
    """Count (trainable) parameters of a model or a list of layers."""
    import numpy as np

    weights = (layers_or_model.trainable_weights if trainable_only else layers_or_model.weights) \
        if hasattr(layers_or_model, "weights") else \
        [w for layer in layers_or_model for w in
         (layer.trainable_weights if trainable_only else layer.weights)]
    return int(sum(np.prod(w.shape) for w in weights))


def decode_predictions(preds, top: int = 5):
    """ImageNet class names for predictions, online or from the mirror's class index."""
    import json

    import numpy as np

    path = mirror.class_index_path()
    if path is None:
        import keras

        with errors.explain_download("the ImageNet class index", "imagenet_class_index.json"):
            return keras.applications.imagenet_utils.decode_predictions(preds, top=top)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # truncated or damaged JSON
        raise errors.corrupt("the ImageNet class index", path, exc) from exc
    wrong = mirror._read_class_index(path, "class_index")  # other keys, or not the 1000 classes
    if wrong:
        raise errors.CorruptResourceError(f"Cannot read the ImageNet class index from {path}: {wrong}. "
                                          f"{errors.FIX_CORRUPT}")
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            "decode_predictions expects a batch of ImageNet predictions of shape (n, 1000). "
            f"Received: shape={preds.shape}."
        )
    out = []
    for row in preds:
        idx = row.argsort()[-top:][::-1]
        out.append([(index[str(i)][0], index[str(i)][1], float(row[i])) for i in idx])
    return out
