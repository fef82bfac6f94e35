"""Digit datasets (MNIST, USPS) as course ImageSets, and a small CNN trained from scratch on them.

Taught in `05_negative_transfer`. ImageNet backbones read digits through `to_imageset`
(grayscale PNG bytes; the data pipeline turns them into 3-channel images and resizes
them), while the from-scratch baseline and the in-notebook source models are the small
CNN built by `small_cnn` and trained by `train_cnn` on 28x28 arrays.
"""

from __future__ import annotations

import io
import math

import numpy as np

from course_lib import data, features, scale

__all__ = ["CLASS_NAMES", "SIZE", "to_imageset", "mnist_geometry", "small_cnn", "train_cnn", "feature_model", "predict",
           "accuracy", "copy_layers"]

CLASS_NAMES = [str(d) for d in range(10)]
SIZE = 28  # the CNN's input size (MNIST's own)


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


def small_cnn(num_classes: int = 10, width: int = 32, *, augment: bool = False, seed: int | None = 0,
              name: str = "small_cnn"):
    """A small CNN for 28x28 grayscale digits: [shift/rotate] -> two conv blocks -> 128 features -> softmax."""
    import keras
    from keras import layers

    def init(i):  # seeded per layer: the initial weights depend on `seed` only, not on the global RNG
        return keras.initializers.GlorotUniform(seed=None if seed is None else 1000 * seed + i)

    with scale.scope():
        inputs = keras.Input((SIZE, SIZE, 1), name="digits")
        x = layers.Rescaling(1 / 255.0)(inputs)
        if augment:  # active in training only; digits must not be flipped
            x = layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed, name="shift")(x)
            x = layers.RandomRotation(0.03, fill_mode="constant", seed=seed, name="rotate")(x)
        x = layers.Conv2D(width, 3, activation="relu", padding="same", kernel_initializer=init(1), name="conv1")(x)
        x = layers.MaxPooling2D(name="pool1")(x)
        x = layers.Conv2D(2 * width, 3, activation="relu", padding="same", kernel_initializer=init(2), name="conv2")(x)
        x = layers.MaxPooling2D(name="pool2")(x)
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(128, activation="relu", kernel_initializer=init(3), name="features")(x)
        x = layers.Dropout(0.3, seed=seed, name="dropout")(x)
        outputs = scale.output_layer(int(num_classes), name="classifier", kernel_initializer=init(4))(x)
        return keras.Model(inputs, outputs, name=name)


def train_cnn(model, x, *, y, epochs: int = 10, min_steps: int = 100, batch_size: int = 32,
              learning_rate: float = 1e-3, seed: int = 0, verbose: int = 0):
    """Train a digits CNN with Adam for `epochs` passes, or more so that it takes `min_steps` steps."""
    import keras

    x, y, batch_size = _as_input(x), np.asarray(y), scale.global_batch_size(batch_size)
    steps = max(int(epochs) * math.ceil(len(x) / batch_size), int(min_steps))
    order = _schedule(len(x), steps * batch_size, seed)
    keras.utils.set_random_seed(seed)
    features.compile_classifier(model, learning_rate)
    model.fit(x[order], y[order], epochs=1, batch_size=batch_size, shuffle=False, verbose=verbose)
    return model


def _schedule(n: int, total: int, seed: int) -> np.ndarray:
    """Concatenated random permutations of range(n), `total` indices long (one epoch after another)."""
    rng = np.random.default_rng(seed)
    reps = math.ceil(total / n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:total]


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
