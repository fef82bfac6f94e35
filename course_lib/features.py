"""Feature extraction with a frozen backbone, cached on disk, and heads trained on features.

Taught in `02_feature_extraction`. The cache key covers everything that changes the
features: the backbone's architecture and exact weights, the input size, the
preprocessing, the pooling and the data fingerprint. Files are written atomically and a
damaged or mismatched file is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib

import numpy as np

from course_lib import backbones, config, data, errors, folders, scale

__all__ = ["weights_digest", "cache_key", "cache_path", "extract", "read_cache", "write_cache", "extract_splits",
           "make_head", "train_head", "check_num_classes", "check_learning_rate", "compile_classifier",
           "feature_dataset", "frozen_classifier", "train_in_model", "accuracy"]


def weights_digest(model) -> str:
    """A hash of a model's architecture and exact weight values (layer names do not count)."""
    config = json.dumps(_without_layer_names(model.get_config(), model), sort_keys=True, default=str)
    h = hashlib.sha256(config.encode())
    for w in model.weights:
        h.update(str(w.dtype).encode() + str(tuple(w.shape)).encode())
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()[:20]


def _all_layers(layer) -> list:
    return [layer] + [sub for child in getattr(layer, "layers", []) for sub in _all_layers(child)]


def _without_layer_names(config, model):
    """The config with layer names replaced by their position (a second load gets `input_layer_1`)."""
    ids = {}
    for layer in _all_layers(model):
        ids.setdefault(layer.name, f"#layer{len(ids)}")

    def walk(obj):
        if isinstance(obj, dict):
            return {k: walk(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [walk(v) for v in obj]
        return ids.get(obj, obj) if isinstance(obj, str) else obj

    return walk(config)


def _preprocess_id(preprocess) -> str:
    if preprocess is None:
        return "none"
    if isinstance(preprocess, str):
        return f"backbone:{backbones.get(preprocess).module}"
    name = f"{getattr(preprocess, '__module__', '?')}.{getattr(preprocess, '__qualname__', type(preprocess).__name__)}"
    return f"{name}#{_code_digest(preprocess)}"


def _code_digest(fn) -> str:
    """A stable hash of a function's code, constants, defaults and closure (two lambdas differ)."""
    return hashlib.sha256(_stable_repr(fn).encode()).hexdigest()[:12]


def _stable_repr(obj, depth: int = 0) -> str:
    """Like repr, without memory addresses, for code, functions, partials and containers."""
    import functools
    import types

    if depth > 6:
        return "..."
    rec = lambda o: _stable_repr(o, depth + 1)  # noqa: E731
    if isinstance(obj, types.CodeType):
        return f"code({obj.co_code.hex()},{[rec(c) for c in obj.co_consts]},{obj.co_names})"
    if isinstance(obj, functools.partial):
        return f"partial({rec(obj.func)},{rec(obj.args)},{rec(sorted(obj.keywords.items()))})"
    if isinstance(obj, types.FunctionType):
        cells = [rec(c.cell_contents) for c in obj.__closure__ or ()]
        return f"fn({rec(obj.__code__)},{rec(obj.__defaults__)},{cells})"
    if isinstance(obj, (list, tuple)):
        return f"{type(obj).__name__}({[rec(o) for o in obj]})"
    if callable(obj):  # builtins and callable objects: their type (and module) identify them
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"
    return repr(obj)


def cache_key(model, ds: data.ImageSet, image_size: int, preprocess) -> dict:
    """Everything that changes the extracted features."""
    return {"model": model.name, "weights": weights_digest(model), "image_size": int(image_size),
            "preprocess": _preprocess_id(preprocess), "data": ds.fingerprint(),
            "output_shape": str(model.output_shape), "version": 1}


def cache_path(key: dict) -> pathlib.Path:
    """Where the features for a key are stored."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return config.cache_dir() / "features" / f"{key['model']}-{digest}.npz"


def extract(model, ds: data.ImageSet, *, image_size: int, preprocess="mobilenet_v2",
            batch_size: int = 64, cache: bool = True, verbose: int | None = None):
    """Features of every image in `ds` from a frozen `model`, read from cache when valid."""
    ds.require_images("extract features")
    key = cache_key(model, ds, image_size, preprocess) if cache else None
    path = cache_path(key) if cache else None
    if cache:
        hit = read_cache(path, key, len(ds))
        if hit is not None:
            return hit, ds.labels.copy()
    pipe = data.pipeline(ds, image_size, preprocess=preprocess, batch_size=batch_size, cache=False)
    verbose = config.verbose() if verbose is None else verbose
    with folders.naming_bad_files(ds.items):
        feats = model.predict(pipe, verbose=verbose).astype("float32")
    if cache:
        write_cache(path, key, feats, ds.labels)
    return feats, ds.labels.copy()


def read_cache(path: pathlib.Path, key: dict, n: int):
    """The cached array at `path` if its key matches and it has `n` finite rows, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if json.loads(str(f["key"])) != key or f["features"].shape[0] != n:
                return None
            feats = f["features"].copy()
        return feats if np.isfinite(feats).all() else None  # NaN or inf: rebuilt, never trusted
    except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, never trusted
        return None


def write_cache(path: pathlib.Path, key: dict, feats: np.ndarray, labels: np.ndarray) -> None:
    """Write an array with its key atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, features=feats, labels=labels, key=json.dumps(key, sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when writing failed


def extract_splits(model, splits: dict, image_size: int, preprocess="mobilenet_v2", **kwargs) -> dict:
    """`extract` for each split of a dict like {'train': ImageSet, 'val': ...}."""
    return {name: extract(model, ds, image_size=image_size, preprocess=preprocess, **kwargs) for name,
            ds in splits.items()}


def make_head(input_dim: int, num_classes: int, dropout: float = 0.2, name: str = "head"):
    """A classification head: dropout then a softmax Dense layer."""
    import keras

    if num_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes. Received: num_classes={num_classes}.")
    with scale.scope():
        return keras.Sequential([keras.Input((input_dim,)), keras.layers.Dropout(dropout),
                                 scale.output_layer(int(num_classes))], name=name)


def train_head(train, val=None, *, num_classes: int | None = None, epochs: int = 20,
               learning_rate: float = 1e-3, batch_size: int = 32, seed: int = 0, verbose: int = 0,
               dropout: float = 0.2):
    """Train a head on cached features; `train`/`val` are (features, labels) pairs."""
    import keras

    x, y = train
    if not len(x):
        raise errors.EmptySplitError("The training features are empty (0 rows), so no head can be trained. "
                                     "Fix: extract features from a training split that has images "
                                     "(`len(splits['train'])` must be above 0).")
    num_classes = check_num_classes(y, num_classes)
    keras.utils.set_random_seed(seed)
    head = compile_classifier(make_head(x.shape[1], num_classes, dropout), learning_rate)
    batch_size = scale.global_batch_size(batch_size)
    train_ds = feature_dataset(x, y, batch_size=batch_size, shuffle=True, seed=seed)
    val_ds = None if val is None else feature_dataset(*val, batch_size=batch_size)
    history = head.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=verbose, shuffle=False)
    return head, history


def check_num_classes(y, num_classes) -> int:
    """`num_classes` (default: the largest label + 1), or a clear error when a label does not fit."""
    num_classes = int(num_classes or (np.max(y) + 1))
    if np.max(y) >= num_classes:
        raise ValueError(f"Labels go up to {int(np.max(y))} but num_classes={num_classes}. "
                         "Pass the dataset's number of classes.")
    return num_classes


def check_learning_rate(learning_rate) -> None:
    """Refuse a learning rate that is not a positive finite number (schedules are accepted)."""
    import keras

    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, np.number)) \
            or not math.isfinite(float(learning_rate)) or float(learning_rate) <= 0:
        raise ValueError(f"The learning rate must be a positive number. Received: learning_rate="
                         f"{learning_rate!r}. Allowed: a float > 0 (fine-tuning: about 10x below the "
                         "head's, e.g. 1e-4) or a keras.optimizers.schedules.LearningRateSchedule.")


def compile_classifier(model, learning_rate: float = 1e-3, *, reuse: dict | None = None):
    """Compile (again) with Adam at `learning_rate` (or a schedule) and sparse cross-entropy: every model in the course.

    Needed after every change of `trainable`: a change only counts once the model is compiled again.
    `reuse` (a dict kept across runs): a model last compiled there at the same rate, with the same
    trainable weights, only gets a fresh optimizer state (a grid of short runs on a CPU spends
    about 40% of each run retracing after a compile).
    """
    import keras

    check_learning_rate(learning_rate)
    if reuse is not None:
        rate = (type(learning_rate).__name__, repr(sorted(learning_rate.get_config().items()))) \
            if hasattr(learning_rate, "get_config") else float(learning_rate)
        state = (rate, tuple(id(v) for v in model.trainable_variables))
        if reuse.get(("compiled", id(model))) == (state, model):
            _reset_optimizer(model.optimizer)
            return model
        reuse[("compiled", id(model))] = (state, model)
    with scale.scope():
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"], **scale.compile_kwargs())
    return model


def _reset_optimizer(optimizer) -> None:
    """A fresh optimizer state (step 0, zero moments) without a recompile; the learning rate stays."""
    import tensorflow as tf

    if not optimizer.built:
        return
    keep = {id(getattr(optimizer, "_learning_rate", None))}
    for v in optimizer.variables:
        if id(v) not in keep:
            v.assign(tf.zeros_like(v))


def feature_dataset(x, y, *, batch_size: int = 32, shuffle: bool = False, seed: int = 0):
    """Features as a `tf.data` pipeline, shuffled exactly like `cl.data.pipeline(..., seed=seed)`."""
    import tensorflow as tf

    d = tf.data.Dataset.from_tensor_slices((np.asarray(x, "float32"), np.asarray(y).astype("int32")))
    if shuffle:
        d = d.shuffle(max(len(x), 1), seed=seed, reshuffle_each_iteration=True)
    return d.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def frozen_classifier(backbone, num_classes: int, *, dropout: float = 0.2, seed: int = 0,
                      name: str = "frozen_classifier"):
    """Image -> frozen backbone (called with training=False) -> new head, as one model."""
    import keras

    backbone.trainable = False
    keras.utils.set_random_seed(seed)  # the same head initialisation as train_head(seed=seed)
    head = make_head(backbone.output_shape[-1], num_classes, dropout)
    with scale.scope():
        inputs = keras.Input(backbone.input_shape[1:], name="image")
        return keras.Model(inputs, head(backbone(inputs, training=False)), name=name)


def train_in_model(backbone, train: data.ImageSet, *, val: data.ImageSet | None = None,
                   image_size: int = 224, preprocess="mobilenet_v2", epochs: int = 20,
                   learning_rate: float = 1e-3, batch_size: int = 32, seed: int = 0,
                   verbose: int = 0, dropout: float = 0.2):
    """The same training as `train_head`, but the backbone runs on every image of every epoch."""
    train.require_images("train a model")
    model = frozen_classifier(backbone, check_num_classes(train.labels, len(train.class_names)),
                              dropout=dropout, seed=seed)
    compile_classifier(model, learning_rate)
    batch_size = scale.global_batch_size(batch_size)
    train_ds = data.pipeline(train, image_size, preprocess=preprocess, batch_size=batch_size, shuffle=True, seed=seed)
    val_ds = None if val is None else data.pipeline(val, image_size, preprocess=preprocess, batch_size=batch_size)
    with folders.naming_bad_files(train.items + ([] if val is None else val.items)):
        history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=verbose,
                            shuffle=False)  # the pipeline shuffles, seeded like train_head
    return model, history


def accuracy(model, x, y) -> float:
    """Top-1 accuracy of a classifier on arrays or features."""
    pred = np.argmax(model.predict(x, verbose=0), axis=-1)
    return float(np.mean(pred == np.asarray(y)))
