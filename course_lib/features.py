"""Feature extraction with a frozen backbone, cached on disk, and heads trained on features.

Taught in `02_feature_extraction`. The cache key covers everything that changes the
features: the backbone's architecture and exact weights, the input size, the
preprocessing, the pooling and the data fingerprint. Files are written atomically and a
damaged or mismatched file is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import numpy as np

from course_lib import backbones, config, data


def weights_digest(model) -> str:
    """A hash of a model's architecture and exact weight values."""
    h = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for w in model.weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()[:20]


def _preprocess_id(preprocess) -> str:
    if preprocess is None:
        return "none"
    if isinstance(preprocess, str):
        return f"backbone:{backbones.get(preprocess).module}"
    return f"{getattr(preprocess, '__module__', '?')}.{getattr(preprocess, '__qualname__', repr(preprocess))}"


def cache_key(model, ds: data.ImageSet, image_size: int, preprocess) -> dict:
    """Everything that changes the extracted features."""
    return {"model": model.name, "weights": weights_digest(model), "image_size": int(image_size),
            "preprocess": _preprocess_id(preprocess), "data": ds.fingerprint(),
            "output_shape": str(model.output_shape), "version": 1}


def cache_path(key: dict) -> pathlib.Path:
    """Where the features for a key are stored."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return config.cache_dir() / "features" / f"{key['model']}-{digest}.npz"


def extract(model, ds: data.ImageSet, image_size: int, preprocess="mobilenet_v2",
            batch_size: int = 64, cache: bool = True, verbose: int | None = None):
    """Features of every image in `ds` from a frozen `model`, read from cache when valid."""
    key = cache_key(model, ds, image_size, preprocess) if cache else None
    path = cache_path(key) if cache else None
    if cache:
        hit = _read(path, key, len(ds))
        if hit is not None:
            return hit, ds.labels.copy()
    pipe = data.pipeline(ds, image_size, preprocess=preprocess, batch_size=batch_size, cache=False)
    verbose = config.verbose() if verbose is None else verbose
    feats = model.predict(pipe, verbose=verbose).astype("float32")
    if cache:
        _write(path, key, feats, ds.labels)
    return feats, ds.labels.copy()


def _read(path: pathlib.Path, key: dict, n: int):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if json.loads(str(f["key"])) != key or f["features"].shape[0] != n:
                return None
            return f["features"].copy()
    except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, never trusted
        return None


def _write(path: pathlib.Path, key: dict, feats: np.ndarray, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, features=feats, labels=labels, key=json.dumps(key, sort_keys=True))
    os.replace(tmp, path)


def extract_splits(model, splits: dict, image_size: int, preprocess="mobilenet_v2", **kwargs) -> dict:
    """`extract` for each split of a dict like {'train': ImageSet, 'val': ...}."""
    return {name: extract(model, ds, image_size, preprocess, **kwargs) for name, ds in splits.items()}


def make_head(input_dim: int, num_classes: int, dropout: float = 0.2, name: str = "head"):
    """A classification head: dropout then a softmax Dense layer."""
    import keras

    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes. Received: num_classes={num_classes}.")
    return keras.Sequential([keras.Input((input_dim,)), keras.layers.Dropout(dropout),
                             keras.layers.Dense(num_classes, activation="softmax")], name=name)


def train_head(train, val=None, num_classes: int | None = None, epochs: int = 20,
               learning_rate: float = 1e-3, batch_size: int = 32, seed: int = 0, verbose: int = 0):
    """Train a head on cached features; `train`/`val` are (features, labels) pairs."""
    import keras

    x, y = train
    num_classes = int(num_classes or (np.max(y) + 1))
    if np.max(y) >= num_classes:
        raise ValueError(f"Labels go up to {int(np.max(y))} but num_classes={num_classes}. "
                         "Pass the dataset's number of classes.")
    keras.utils.set_random_seed(seed)
    head = make_head(x.shape[1], num_classes)
    head.compile(optimizer=keras.optimizers.Adam(learning_rate),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = head.fit(x, y, validation_data=val, epochs=epochs, batch_size=batch_size,
                       verbose=verbose, shuffle=True)
    return head, history


def accuracy(model, x, y) -> float:
    """Top-1 accuracy of a classifier on arrays or features."""
    pred = np.argmax(model.predict(x, verbose=0), axis=-1)
    return float(np.mean(pred == np.asarray(y)))
