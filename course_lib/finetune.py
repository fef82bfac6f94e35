"""Fine-tuning: unfreeze a backbone's top blocks, train in two stages, cache the frozen bottom.

Taught in `03_fine_tuning`. `unfreeze_top()` makes the top N blocks trainable (keeping every
BatchNormalization layer frozen, so it runs in inference mode) and reports what changed;
`fine_tune()` trains them at a lower learning rate (stage 2 alone; `sweep_blocks()` compares
N), `join_histories()` joins the stages into one `TrainingRecord`; `split_at_block()` cuts a
backbone below its top blocks so the frozen bottom can run once and its activations be cached.
The whole two-stage loop is `cl.recipe.fit_two_stages`.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from course_lib import backbones, features, plots, scale

__all__ = ["STAGE_NAMES", "top_blocks", "UnfreezeReport", "unfreeze_top", "freeze", "expected_trainable",
           "split_at_block", "classifier", "TrainingRecord", "join_histories", "check_labels", "epoch_timer",
           "as_dataset", "fine_tune", "sweep_blocks"]

STAGE_NAMES = ("train head", "fine-tune")


# ------------------------------------------------------------------ unfreezing

def _is_batchnorm(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.BatchNormalization)


def top_blocks(backbone, name: str, n_blocks) -> list[tuple[str, list]]:
    """The top blocks (name, layers), bottom to top: the top `n_blocks`, or from the block named so up."""
    blocks = backbones.blocks(backbone, name)
    names = [b for b, _ in blocks]
    if not blocks:
        raise ValueError(
            f"Model {backbone.name!r} has no blocks of {name!r}: its layer names do not match that "
            f"architecture. Received: name={name!r}, a model whose first layers are "
            f"{', '.join(layer.name for layer in backbone.layers[:4])}. Allowed names: "
            f"{', '.join(backbones.names())}; pass the name of the architecture this model was built as.")
    if isinstance(n_blocks, str):
        if n_blocks not in names:
            raise ValueError(
                f"{name} has no block named {n_blocks!r}. Received: {n_blocks!r}. Allowed: one of "
                f"{', '.join(names)} (bottom to top), or a number of top blocks from 0 to {len(names)}.")
        n_blocks = len(names) - names.index(n_blocks)
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, (int, np.integer)) \
            or not 0 <= n_blocks <= len(blocks):
        shown = ", ".join(names[-4:])
        raise ValueError(
            f"Cannot unfreeze the top {n_blocks!r} blocks. Received: n_blocks={n_blocks!r}, but "
            f"{name} has {len(blocks)} blocks (the top ones, bottom to top: ..., {shown}). "
            f"Allowed: an integer from 0 to {len(blocks)}, or a block name.")
    return blocks[len(blocks) - int(n_blocks):]


@dataclasses.dataclass
class UnfreezeReport:
    """What `unfreeze_top` changed: blocks, layers, and trainable parameters before and after."""

    backbone: str
    n_blocks: int
    blocks: list
    layers: list
    frozen_batchnorm: list
    trainable_before: int
    trainable_after: int

    def summary(self) -> str:
        """A few human-readable lines."""
        blocks = ", ".join(self.blocks) if self.blocks else "none"
        return (f"{self.backbone}: unfroze the top {self.n_blocks} block(s): {blocks}\n"
                f"  {len(self.layers)} layer(s) now trainable, {len(self.frozen_batchnorm)} "
                f"BatchNormalization layer(s) in them kept frozen (inference mode)\n"
                f"  trainable parameters of the backbone: {self.trainable_before:,} -> "
                f"{self.trainable_after:,}")

    def __str__(self) -> str:
        return self.summary()


def unfreeze_top(backbone, name: str, n_blocks, keep_batchnorm_frozen: bool = True) -> UnfreezeReport:
    """Make only the top blocks trainable (a count, or the first block's name); report it.

    With `keep_batchnorm_frozen` (the course's default) BatchNormalization layers stay frozen, so
    they run in inference mode whatever `training` says. Without it their gamma and beta train too
    (the Keras guide's way, which relies on calling the backbone with training=False; in Keras 3,
    `fit()` replaces that recorded argument, and 03 measures what follows).
    """
    chosen = top_blocks(backbone, name, n_blocks)
    before = backbones.param_count(backbone, trainable_only=True)
    unfrozen = {id(layer) for _, layers in chosen for layer in layers}
    backbone.trainable = True  # sets every layer; then freeze all but the chosen ones
    made, kept = [], []
    for layer in backbone.layers:
        keep_bn = keep_batchnorm_frozen and _is_batchnorm(layer)
        layer.trainable = id(layer) in unfrozen and not keep_bn
        if id(layer) in unfrozen:
            (kept if keep_bn else made).append(layer.name)
    after = backbones.param_count(backbone, trainable_only=True)
    return UnfreezeReport(name, len(chosen), [b for b, _ in chosen], made, kept, before, after)


def freeze(backbone) -> None:
    """Freeze every layer of a backbone (stage one: only the head trains)."""
    backbone.trainable = False


def expected_trainable(backbone, name: str, n_blocks: int, keep_batchnorm_frozen: bool = True) -> int:
    """Parameters that unfreezing the top `n_blocks` makes trainable, counted from the blocks."""
    layers = [layer for _, block in top_blocks(backbone, name, n_blocks) for layer in block
              if not (keep_batchnorm_frozen and _is_batchnorm(layer))]
    return backbones.param_count(layers)


# ------------------------------------------------------------------ models

def split_at_block(backbone, name: str, n_blocks: int):
    """(bottom, top): bottom maps images to the input of the top `n_blocks`; top maps that to features."""
    import keras

    if n_blocks == 0 or isinstance(n_blocks, bool):
        raise ValueError(f"split_at_block needs at least one top block. Received: n_blocks={n_blocks!r}. "
                         "With 0 blocks there is nothing to fine-tune: use the backbone's features.")
    first = top_blocks(backbone, name, n_blocks)[0]
    cut = first[1][0].input
    if not hasattr(cut, "shape") or isinstance(cut, (list, tuple, dict)):
        raise ValueError(f"Block {first[0]!r} of {name} does not start from a single tensor; "
                         "it cannot be used as a cut point.")
    bottom = keras.Model(backbone.input, cut, name=f"{backbone.name}_below_{first[0]}")
    top = keras.Model(cut, backbone.output, name=f"{backbone.name}_from_{first[0]}")
    return bottom, top


def classifier(base, head, batchnorm_inference: bool = True, name: str = "classifier"):
    """Input -> `base` -> `head` as one model; `base` is called with training=False by default.

    Keras 3's `fit()` replaces that recorded training=False by True: only frozen BatchNormalization
    layers are sure to stay in inference mode (see `unfreeze_top`).
    """
    import keras

    with scale.scope():
        inputs = keras.Input(base.input_shape[1:], name="inputs")
        feats = base(inputs, training=False) if batchnorm_inference else base(inputs)
        return keras.Model(inputs, head(feats), name=name)


# ------------------------------------------------------------------ training record

@dataclasses.dataclass
class TrainingRecord:
    """Histories of one or more stages joined: epochs numbered continuously, stage starts kept."""

    history: dict
    stage_names: list
    stage_starts: list  # the first epoch (1-based) of each stage
    seconds: list  # seconds of each epoch (None where unknown)
    unfreeze: UnfreezeReport | None = None

    @property
    def epochs(self) -> list:
        """Epoch numbers 1..n over all stages."""
        return list(range(1, self.num_epochs + 1))

    @property
    def num_epochs(self) -> int:
        """Number of epochs over all stages."""
        return len(next(iter(self.history.values()), []))

    @property
    def boundary(self) -> int:
        """The last epoch before fine-tuning (the second stage) starts."""
        return self.stage_starts[1] - 1 if len(self.stage_starts) > 1 else self.num_epochs

    def final(self, metric: str = "val_accuracy") -> float:
        """The metric's value after the last epoch."""
        return float(self.history[metric][-1])

    def at_boundary(self, metric: str = "val_accuracy") -> float:
        """The metric's value when the first stage ended."""
        return float(self.history[metric][self.boundary - 1])

    def stage_seconds(self, stage: int = -1) -> float:
        """Seconds per epoch of a stage: its fastest epoch (the first one also builds the graph)."""
        bounds = list(self.stage_starts) + [self.num_epochs + 1]
        index = range(len(self.stage_starts))[stage]
        known = [s for s in self.seconds[bounds[index] - 1:bounds[index + 1] - 1] if s is not None]
        return float(min(known)) if known else float("nan")


def join_histories(*stages, names=None, seconds=None, unfreeze=None) -> TrainingRecord:
    """Join Keras histories (or dicts) of consecutive stages into one TrainingRecord."""
    dicts = [plots.history_dict(h) for h in stages]
    if not dicts or any(not d for d in dicts):
        raise ValueError("join_histories needs at least one non-empty history per stage.")
    keys = [k for k in dicts[0] if all(k in d for d in dicts)]
    joined = {k: [v for d in dicts for v in d[k]] for k in keys}
    lengths = [len(next(iter(d.values()))) for d in dicts]
    starts = list(np.cumsum([1] + lengths[:-1]).astype(int))
    names = list(names) if names else [STAGE_NAMES[i] if i < len(STAGE_NAMES) else f"stage {i + 1}"
                                       for i in range(len(dicts))]
    secs = list(seconds) if seconds is not None else [None] * sum(lengths)
    if len(secs) != sum(lengths):
        raise ValueError(f"Expected one time per epoch. Received: {len(secs)} times for "
                         f"{sum(lengths)} epochs.")
    return TrainingRecord(joined, names, [int(s) for s in starts], secs, unfreeze)


# ------------------------------------------------------------------ training

def check_labels(model, data, split: str = "training") -> None:
    """Fail before `fit` unless every label of `data` is an integer from 0 to the model's outputs - 1.

    `data`: an ImageSet, an (x, y) pair or a tf.data dataset (not checked: only reading it tells).
    """
    if hasattr(data, "class_names"):
        y, fix = data.labels, f"num_classes={len(data.class_names)} (the dataset's number of classes)"
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        y, fix = data[1], "num_classes=<the dataset's number of classes>"
    else:
        return
    n, y = getattr(model, "output_shape", (None,))[-1], np.asarray(y)
    y = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
    if not isinstance(n, int) or y.ndim != 1 or not y.size:
        return
    whole = y.dtype.kind in "iub" or (y.dtype.kind == "f" and bool(np.all(np.mod(y, 1) == 0)))
    if whole and y.min() >= 0 and y.max() < n:
        return
    odd = y[np.argmax(np.mod(y, 1) != 0)] if y.dtype.kind == "f" else y[0]  # a non-integer label
    got = f"labels from {int(y.min())} (smallest) to {int(y.max())} (largest)" if whole else \
        f"labels of dtype {y.dtype}, e.g. {np.asarray(odd).item()!r}"
    raise ValueError(f"The {split} labels do not fit model {model.name!r}: it has {n} outputs "
                     f"(output_shape[-1]={n}), so each label must be an integer from 0 to {n - 1}. "
                     f"Received: {got}. Fix: build the head with {fix}, or check the labels.")


def epoch_timer():
    """A Keras callback that records the seconds of each epoch (its `seconds` list)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Seconds per epoch (training and validation)."""

        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def as_dataset(data, batch_size: int = 32, shuffle: bool = False, seed: int = 0):
    """A (x, y) pair of arrays as a batched tf.data pipeline; a tf.data.Dataset is returned as is."""
    import tensorflow as tf

    if data is None or isinstance(data, tf.data.Dataset):
        return data
    return features.feature_dataset(*data, batch_size=batch_size, shuffle=shuffle, seed=seed)


def _fit(model, train, *, val, epochs, initial_epoch, batch_size, seed, verbose):
    import keras

    keras.utils.set_random_seed(seed)
    timer, batch_size = epoch_timer(), scale.global_batch_size(batch_size)
    history = model.fit(as_dataset(train, batch_size, shuffle=True, seed=seed),
                        validation_data=as_dataset(val, batch_size), epochs=initial_epoch + epochs,
                        initial_epoch=initial_epoch, verbose=verbose, callbacks=[timer], shuffle=False)
    return history, timer.seconds


def fine_tune(model, backbone, *, name: str, n_blocks: int, train, val, epochs: int,
              learning_rate: float = 1e-4, initial_epoch: int = 0, batch_size: int = 32,
              keep_batchnorm_frozen: bool = True, seed: int = 0, verbose: int = 0):
    """Stage two alone: unfreeze the top blocks, recompile at `learning_rate`, continue training."""
    check_labels(model, train), check_labels(model, val, "validation")
    report = unfreeze_top(backbone, name, n_blocks, keep_batchnorm_frozen)
    features.compile_classifier(model, learning_rate)  # a change of `trainable` only takes effect after compile
    history, seconds = _fit(model, train, val=val, epochs=epochs, initial_epoch=initial_epoch,
                            batch_size=batch_size, seed=seed, verbose=verbose)
    return history, seconds, report


def sweep_blocks(model, backbone, *, name: str, n_values, train, val, epochs: int,
                 learning_rate: float = 1e-4, batch_size: int = 32, seed: int = 0, verbose: int = 0) -> list:
    """Fine-tune from the same starting weights for each N in `n_values`; one result dict per N."""
    start = model.get_weights()
    results = []
    for n in n_values:
        model.set_weights(start)
        history, seconds, report = fine_tune(model, backbone, name=name, n_blocks=n, train=train, val=val,
                                             epochs=epochs,
                                             learning_rate=learning_rate, batch_size=batch_size,
                                             seed=seed, verbose=verbose)
        results.append({"n_blocks": int(n), "val_accuracy": float(history.history["val_accuracy"][-1]),
                        "seconds_per_epoch": float(min(seconds)),
                        "trainable_params": backbones.param_count(model, trainable_only=True),
                        "report": report})
    model.set_weights(start)
    freeze(backbone)
    return results
