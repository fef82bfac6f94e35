"""A small convolutional network trained from scratch: the baseline transfer learning must beat.

Taught in `02_feature_extraction` (data-size sweep) and reused in `05_negative_transfer`
(digits: the baseline and the in-notebook source models, built with `cl.digits.CNN`). The
network is deliberately small and works on small inputs (28-96 px) so that a CPU trains it
in seconds; its inputs are raw pixels in [0, 255] (it rescales them itself).
"""

from __future__ import annotations

import math

import numpy as np

from course_lib import config, features, finetune, scale

__all__ = ["make_cnn", "epochs_for", "train"]


def make_cnn(image_size: int, num_classes: int, *, channels: int = 3, widths=(16, 32, 64),
             features: int | None = None, batchnorm: bool = True, dropout: float = 0.3, augment: bool = True,
             seed: int | None = None, name: str = "scratch_cnn"):
    """A small CNN: [flip/shift] -> (conv-[BN]-ReLU-pool) per width -> GAP or `features` units -> dropout -> softmax.

    With `seed`, each layer's initial weights depend on the seed only (not on the global RNG).
    `cl.digits.CNN` holds 05's settings for 28x28 digits (no BatchNormalization, 128 features).
    """
    import keras
    from keras import layers

    image_size, num_classes, channels = _check_args(image_size, num_classes, channels, widths)

    def init(i):  # seeded per layer, or the global RNG
        return "glorot_uniform" if seed is None else keras.initializers.GlorotUniform(seed=1000 * seed + i)

    with scale.scope():
        inputs = keras.Input((image_size, image_size, channels), name="pixels")
        x = layers.Rescaling(1.0 / 255)(inputs)
        if augment:
            x = layers.RandomFlip("horizontal", seed=seed)(x)
            x = layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed)(x)
        for i, width in enumerate(widths):
            x = layers.Conv2D(width, 3, padding="same", use_bias=not batchnorm,
                              activation=None if batchnorm else "relu", kernel_initializer=init(i + 1),
                              name=f"conv{i + 1}")(x)
            if batchnorm:
                x = layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
                x = layers.ReLU()(x)
            x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
        if features is None:
            x = layers.GlobalAveragePooling2D()(x)
        else:
            x = layers.Flatten(name="flatten")(x)
            x = layers.Dense(int(features), activation="relu", kernel_initializer=init(len(widths) + 1),
                             name="features")(x)
        x = layers.Dropout(dropout, seed=seed, name="dropout")(x)
        outputs = scale.output_layer(num_classes, name="classifier", kernel_initializer=init(len(widths) + 2))(x)
        return keras.Model(inputs, outputs, name=name)


def _check_args(image_size, num_classes, channels, widths) -> tuple:
    """(image_size, num_classes, channels) as Python ints, or a clear error."""
    size, n, ch = config.as_int(image_size), config.as_int(num_classes), config.as_int(channels)
    smallest = 8 * 2 ** (len(widths) - 1)
    if size is None or size < smallest:
        raise ValueError(f"image_size must be an integer >= {smallest} for {len(widths)} pooling stages. "
                         f"Received: image_size={image_size!r}. Fix: resize the images to at least "
                         f"{smallest} px, or pass fewer widths.")
    if n is None or n < 2:
        raise ValueError(f"A classifier needs at least 2 classes. Received: num_classes={num_classes!r}. "
                         "Fix: pass the dataset's number of classes (an integer >= 2).")
    if ch not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB). Received: channels={channels!r}.")
    return size, n, ch


def epochs_for(n_train: int, batch_size: int = 32, *, min_steps: int = 150,
               min_epochs: int = 10, max_epochs: int = 200) -> int:
    """Enough epochs for at least `min_steps` gradient steps (small sets need more epochs)."""
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    return int(min(max_epochs, max(min_epochs, math.ceil(min_steps / steps_per_epoch))))


def train(train, val=None, *, model=None, num_classes: int | None = None, epochs: int | None = None,
          min_steps: int = 150, batch_size: int = 32, learning_rate: float = 3e-3, decay: bool = True,
          seed: int = 0, verbose: int = 0, **model_kwargs):
    """Train a CNN from scratch on uint8 images `train`/`val` = (images, labels); returns (model, history).

    The model is `model`, or `make_cnn(**model_kwargs)` sized for the images. It trains for
    `epochs`, by default `epochs_for` (at least 10 epochs and `min_steps` steps), with Adam at
    `learning_rate`, decayed along a cosine to 0 unless `decay=False`.
    """
    import keras

    x, y = _as_images(*train)
    keras.utils.set_random_seed(seed)
    if model is None:
        num_classes = features.check_num_classes(y, num_classes)
        model = make_cnn(x.shape[1], num_classes, channels=x.shape[-1], **model_kwargs)
    batch_size = scale.global_batch_size(batch_size)
    epochs = epochs or epochs_for(len(x), batch_size, min_steps=min_steps)
    rate = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * math.ceil(len(x) / batch_size)) \
        if decay else learning_rate
    features.compile_classifier(model, rate)
    val = None if val is None else _as_images(*val)
    finetune.check_labels(model, (x, y)), finetune.check_labels(model, val, "validation")
    history = model.fit(x, y, validation_data=val, epochs=epochs, batch_size=batch_size,
                        shuffle=True, verbose=verbose)
    return model, history


def _as_images(x, y):
    x = np.asarray(x)
    if x.ndim == 3:  # (n, h, w) grayscale -> (n, h, w, 1)
        x = x[..., None]
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
        raise ValueError("Expected square images of shape (n, size, size[, channels]). "
                         f"Received: shape={x.shape}.")
    return x.astype("float32"), np.asarray(y).astype("int64")
