"""Digit datasets (MNIST, USPS) as course ImageSets, and a small CNN trained from scratch on them.

Taught in `05_negative_transfer`. ImageNet backbones read digits through `to_imageset`
(grayscale PNG bytes; the data pipeline turns them into 3-channel images and resizes
them), while the from-scratch baseline and the in-notebook source models are `cl.scratch`'s
small CNN with the settings `CNN` and `TRAINING`, on 28x28 arrays.
"""

from __future__ import annotations

import io

import numpy as np

from course_lib import data

__all__ = ["CLASS_NAMES", "SIZE", "CNN", "TRAINING", "to_imageset", "mnist_geometry", "feature_model", "predict",
           "accuracy", "copy_layers"]

CLASS_NAMES = [str(d) for d in range(10)]
SIZE = 28  # the CNN's input size (MNIST's own)
# 05's CNN: cl.scratch.make_cnn(**CNN, seed=...): two conv blocks, then 128 features (the layer a source
# model offers as its backbone), 0.4 M parameters; trained by cl.scratch.train(..., **TRAINING): Adam at a
# constant 1e-3, at least 10 epochs and 100 steps.
CNN = {"image_size": SIZE, "num_classes": 10, "channels": 1, "widths": (32, 64), "features": 128, "batchnorm": False,
       "augment": False}
TRAINING = {"min_steps": 100, "learning_rate": 1e-3, "decay": False}


def to_imageset(x: np.ndarray, y: np.ndarray, name: str = "digits") -> data.ImageSet:
    """Wrap uint8 grayscale digits (n, h, w) and labels into an ImageSet of PNG bytes."""
    from PIL import Image

    x, y = _check_digits(x, y)
    items = []
    for img in x:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")  # 2-D uint8: 8-bit grayscale
        items.append(buf.getvalue())
    return data.ImageSet(name, items, y.astype(int), list(CLASS_NAMES), f"arrays:{name}")


def _check_digits(x, y):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise ValueError("Digits must be a uint8 array of shape (n, height, width). "
                         f"Received: dtype={x.dtype}, shape={x.shape}.")
    if y.shape != (len(x),):
        raise ValueError(f"Expected one label per image. Received: {len(x)} images, labels of shape {y.shape}.")
    return x, y


def mnist_geometry(x: np.ndarray) -> np.ndarray:
    """Resize digits (e.g. USPS 16x16) into a 20x20 box centred in 28x28, like MNIST."""
    from PIL import Image

    x, _ = _check_digits(x, np.zeros(len(x)))
    out = np.zeros((len(x), SIZE, SIZE), np.uint8)
    for i, img in enumerate(x):
        out[i, 4:24, 4:24] = np.asarray(Image.fromarray(img).resize((20, 20), Image.Resampling.BILINEAR))
    return out


def _as_input(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[1:] != (SIZE, SIZE, 1):
        raise ValueError(f"The digits CNN takes {SIZE}x{SIZE} grayscale images. Received: shape={x.shape}. "
                         "Resize first (see `mnist_geometry`).")
    return x.astype("float32")


def feature_model(model, layer: str = "features"):
    """A model that maps digits to the activations of `layer` (the CNN as a frozen backbone)."""
    import keras

    return keras.Model(model.input, model.get_layer(layer).output, name=f"{model.name}_{layer}")


def predict(model, x, batch_size: int = 512) -> np.ndarray:
    """Outputs of a digits model (features or probabilities) for uint8 digits."""
    return np.asarray(model.predict(_as_input(x), batch_size=batch_size, verbose=0))


def accuracy(model, x, y) -> float:
    """Top-1 accuracy of a digits classifier."""
    return float(np.mean(np.argmax(predict(model, x), -1) == np.asarray(y)))


def copy_layers(source, target, names) -> list:
    """Copy the weights of the named layers from `source` into `target` (same architecture); returns the names."""
    names = list(names)
    missing = [n for n in names if n not in {layer.name for layer in source.layers}]
    if missing:
        raise ValueError(f"Unknown layer names. Received: {missing}. "
                         f"Layers with weights: {[l.name for l in source.layers if l.weights]}.")
    for name in names:
        target.get_layer(name).set_weights(source.get_layer(name).get_weights())
    return names
