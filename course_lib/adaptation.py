"""Domain adaptation: make a source-trained model or head work better on a shifted target domain.

Taught in `04_domain_mismatch`, after `cl.domain` has measured the shift. Features are float
arrays of shape (n, d), as `cl.features.extract` returns them; images are uint8 (n, h, w, 3).

- `coral`: re-colour source features so that their covariance matches the target's (no target labels).
- `adabn`: re-estimate BatchNormalization statistics on unlabeled target images.
- `train_weighted_head`: a head trained on source features plus a few labeled (or stylized) target
  ones, each part weighing the same; `cl.splits.per_class_indices` picks the k labels per class.
"""

from __future__ import annotations

import numpy as np

from course_lib import data, domain, features, scale, shifts

__all__ = ["coral", "bn_layers", "copy_model", "adabn", "part_weights", "train_weighted_head"]

# -------------------------------------------------------------------------------- CORAL


def _cov_power(x, eps: float, power: float):
    """A function m -> m @ (cov(x) + eps*I)^power, computed from a thin SVD (cheap when n << d)."""
    xc = x - x.mean(0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    lam = s ** 2 / max(len(x) - 1, 1)
    gain = (lam + eps) ** power - eps ** power
    return lambda m: ((m @ vt.T) * gain) @ vt + eps ** power * m


def _coral_inputs(source, target, eps):
    source, target = domain.check_features(source, "source"), domain.check_features(target, "target")
    if source.shape[1] != target.shape[1]:
        raise ValueError(f"source and target need the same feature size. "
                         f"Received: {source.shape} and {target.shape}.")
    if not eps > 0:
        raise ValueError(f"eps must be > 0 (it keeps the covariances invertible). Received: eps={eps!r}.")
    return source, target


def coral(source, target, eps: float = 1.0, match_mean: bool = True) -> np.ndarray:
    """Source features re-coloured to the target covariance (and mean): train the head on these."""
    source, target = _coral_inputs(source, target, eps)
    whiten, recolour = _cov_power(source, eps, -0.5), _cov_power(target, eps, 0.5)
    mu_s = source.mean(0)
    mu_t = target.mean(0) if match_mean else mu_s
    return (recolour(whiten(source - mu_s)) + mu_t).astype(np.float32)


# -------------------------------------------------------------------------------- AdaBN


def bn_layers(model) -> list:
    """Every BatchNormalization layer of a model (nested models included)."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found += bn_layers(layer)
    return found


def copy_model(model):
    """An independent copy of a model with the same architecture and weights."""
    import keras

    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    clone.trainable = model.trainable
    return clone


def adabn(model, images, preprocess="mobilenet_v2", batch_size: int = 32):
    """A copy of `model` whose BN moving statistics are re-estimated on unlabeled target images."""
    import tensorflow as tf

    images, fn = shifts.check_images(images), (data.preprocess_fn(preprocess) or (lambda x: x))
    adapted = copy_model(model)
    layers = bn_layers(adapted)
    saved = [(l.trainable, l.momentum) for l in layers]
    momentum = tf.Variable(0.0, trainable=False)  # read at each step, so the step is traced once
    for l in layers:
        l.trainable, l.momentum = True, momentum  # frozen BN layers never update their statistics
    step = tf.function(lambda x: adapted(x, training=True))  # a graph: eager mode holds GBs here
    seen = 0
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        momentum.assign(seen / (seen + len(batch)))  # a running average: every image weighs the same
        step(tf.constant(fn(batch.astype(np.float32))))
        seen += len(batch)
    for l, (trainable, old_momentum) in zip(layers, saved):
        l.trainable, l.momentum = trainable, old_momentum
    return adapted


# ------------------------------------------------------------------ few-shot head retraining


def part_weights(label_parts) -> np.ndarray:
    """Sample weights that give each part the same total weight (mean weight 1)."""
    sizes = [len(p) for p in label_parts]
    if not sizes or min(sizes) == 0:
        raise ValueError(f"Every part needs at least one example. Received: part sizes {sizes}.")
    total = sum(sizes)
    return np.concatenate([np.full(n, total / (len(sizes) * n)) for n in sizes])


def train_weighted_head(parts, num_classes: int, *, epochs: int = 30, learning_rate: float = 1e-3,
                        batch_size: int = 32, seed: int = 0):
    """Train a head on several (features, labels) parts, each part weighing the same in total."""
    import keras

    x = np.concatenate([p[0] for p in parts]).astype(np.float32)
    y = np.concatenate([p[1] for p in parts])
    w = part_weights([p[1] for p in parts])
    keras.utils.set_random_seed(seed)
    head = features.make_head(x.shape[1], num_classes)
    with scale.scope():
        head.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                     **scale.compile_kwargs())
    head.fit(x, y, sample_weight=w, epochs=epochs, batch_size=scale.global_batch_size(batch_size),
             verbose=0, shuffle=True)
    return head
