"""The standard fine-tuning recipe, end to end on images.

Taught in `03_fine_tuning` (the learner writes it there first) and used by `06_capstone`:
augmentation layers inside the model, before the backbone (they travel with `model.save`
and do nothing at inference); the backbone called with `training=False`; stage 1 trains
the head with the backbone frozen; stage 2 unfreezes the top blocks by their names, keeps
every BatchNormalization layer frozen (in Keras 3, `fit()` replaces a `training=False`
recorded in a functional model by `training=True`, so only a frozen BatchNormalization layer
is sure to stay in inference mode), recompiles at a lower learning rate (optionally a
warm-up + cosine schedule) and continues from the last epoch with early stopping.
"""

from __future__ import annotations

import math

import numpy as np

from course_lib import backbones, data, features, finetune, folders, scale

__all__ = ["AUGMENT_SETTINGS", "augmentation", "preprocessing_layer", "build", "find_backbone", "warmup_cosine",
           "learning_rate_now", "snapshot", "moved", "batchnorm_updates_in_training", "training_argument",
           "early_stopping", "fit_two_stages", "accuracy"]

# Raw pixels in [0, 255] -> what each backbone's ImageNet weights expect, as built-in layers
# (so a saved model reloads with safe_mode=True). ResNet50's BGR mean subtraction has none.
_PREPROCESSING = {"mobilenet_v2": "tanh_range", "mobilenet": "tanh_range",
                  "efficientnet_b0": "identity", "mobilenet_v3_small": "identity"}


AUGMENT_SETTINGS = {"flip": "horizontal", "rotation": 0.1, "zoom": 0.15}


def augmentation(seed: int = 0, *, flip: str = "horizontal", rotation: float = 0.1,
                 zoom: float = 0.15, name: str = "augment"):
    """Random flip, rotation and zoom as Keras layers: active in `fit()`, a no-op at inference."""
    import keras

    with scale.scope():
        return keras.Sequential([keras.layers.RandomFlip(flip, seed=seed),
                                 keras.layers.RandomRotation(rotation, seed=seed + 1),
                                 keras.layers.RandomZoom(zoom, seed=seed + 2)], name=name)


def preprocessing_layer(name: str):
    """A built-in Keras layer mapping raw pixels to the input a backbone's weights expect."""
    import keras

    spec = backbones.get(name)
    kind = _PREPROCESSING.get(spec.name)
    if kind is None:
        raise ValueError(f"No built-in preprocessing layer for {spec.name}. Received: name={name!r}. "
                         f"Allowed: {', '.join(sorted(_PREPROCESSING))}; for other backbones, "
                         "preprocess in the input pipeline instead.")
    if kind == "identity":  # these backbones rescale inside the model
        return keras.layers.Identity(name="preprocess")
    return keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")


def build(backbone, num_classes: int, *, preprocess: str, augment=None, dropout: float = 0.2,
          seed: int = 0, name: str = "recipe"):
    """Pixels -> [augment] -> preprocess -> backbone(training=False) -> dropout -> softmax."""
    import keras

    backbone.trainable = False  # stage 1: only the head trains
    keras.utils.set_random_seed(seed)
    with scale.scope():
        inputs = keras.Input(backbone.input_shape[1:], name="pixels")
        x = augment(inputs) if augment is not None else inputs
        x = preprocessing_layer(preprocess)(x)
        x = backbone(x, training=False)  # the Keras guide's convention; fit() overrides it in Keras 3
        x = keras.layers.Dropout(dropout, name="dropout")(x)
        return keras.Model(inputs, scale.output_layer(num_classes)(x), name=name)


def find_backbone(model):
    """The backbone nested in `model`: its sub-model with the most weights; clear error if none."""
    import keras

    nested = [layer for layer in getattr(model, "layers", []) if isinstance(layer, keras.Model)
              and not isinstance(layer, keras.Sequential)]
    if not nested:
        kinds = ", ".join(f"{layer.name} ({type(layer).__name__})" for layer in getattr(model, "layers", [])[:8])
        raise ValueError(f"No backbone found in model {getattr(model, 'name', model)!r}. Received layers: "
                         f"{kinds or 'none'}. Expected: a keras.applications model called as one layer, "
                         "as cl.recipe.build(...) makes it (input -> augment -> preprocess -> backbone -> head).")
    return max(nested, key=lambda m: len(m.weights))


def warmup_cosine(learning_rate: float, *, total_steps: int, warmup_steps: int):
    """Linear warm-up from ~0 to `learning_rate`, then cosine decay to 0 over the remaining steps."""
    import keras

    features.check_learning_rate(learning_rate)
    warmup_steps = max(0, min(int(warmup_steps), int(total_steps) - 1))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate / 100 if warmup_steps else learning_rate,
        decay_steps=max(1, int(total_steps) - warmup_steps),
        warmup_target=float(learning_rate) if warmup_steps else None, warmup_steps=warmup_steps)


def learning_rate_now(model) -> float:
    """The learning rate the model's optimizer applies at its next step."""
    opt = model.optimizer
    lr = opt.learning_rate
    if callable(lr) and not hasattr(lr, "numpy"):
        lr = lr(opt.iterations)
    return float(np.asarray(lr))


def snapshot(model) -> dict:
    """Every weight of `model` by its path, copied (to check later which ones moved)."""
    return {w.path: np.array(w.numpy()) for w in model.weights}


def moved(before: dict, model) -> list:
    """Paths of the weights of `model` that differ from the `before` snapshot."""
    return [w.path for w in model.weights if w.path in before and not np.array_equal(before[w.path], w.numpy())]


def batchnorm_updates_in_training(model, images) -> list:
    """BatchNormalization layers of the backbone whose statistics move when `fit()` would call `model`.

    The model is called once with training=True, as `fit()` calls it, with the current trainable
    flags; the moving statistics are restored afterwards. Empty: inference mode holds.
    """
    import keras

    norms = [layer for layer in find_backbone(model).layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [(layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy()) for layer in norms]
    try:
        model(np.asarray(images, "float32"), training=True)
        return [layer.name for layer, (mean, var) in zip(norms, saved)
                if not (np.array_equal(mean, layer.moving_mean.numpy())
                        and np.array_equal(var, layer.moving_variance.numpy()))]
    finally:
        for layer, (mean, var) in zip(norms, saved):
            layer.moving_mean.assign(mean), layer.moving_variance.assign(var)


def training_argument(model):
    """The `training` value recorded where `model` calls its backbone (None when not given)."""
    backbone = find_backbone(model)
    keys = getattr(model, "_nodes", set())  # Keras 3: "<id(layer)>_ib-<k>" for the k-th call of a layer
    for k, node in enumerate(backbone._inbound_nodes):
        if f"{id(backbone)}_ib-{k}" in keys:
            return node.arguments.kwargs.get("training")
    return None


def early_stopping(patience: int):
    """Stop when validation accuracy has not improved for `patience` epochs; keep the best weights."""
    import keras

    return keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=int(patience),
                                         restore_best_weights=True)


def fit_two_stages(model, train: data.ImageSet, *, val: data.ImageSet, backbone_name: str,
                   image_size: int, first_block, head_epochs: int, fine_tune_epochs: int,
                   head_lr: float = 1e-3, fine_tune_lr: float = 1e-4, warmup_epochs: int = 0,
                   patience: int = 3, batch_size: int = 32, keep_batchnorm_frozen: bool = True,
                   class_weight: dict | None = None, seed: int = 0, verbose: int = 0) -> finetune.TrainingRecord:
    """The whole recipe on a model from `build`: head, then the blocks from `first_block` up.

    `class_weight` ({class index: weight}, as Keras' `fit` takes it) weights both stages' loss.
    """
    features.check_learning_rate(head_lr), features.check_learning_rate(fine_tune_lr)
    finetune.check_labels(model, train), finetune.check_labels(model, val, "validation")
    backbone = find_backbone(model)
    batch = scale.global_batch_size(batch_size)
    train_ds = data.pipeline(train, image_size, batch_size=batch, shuffle=True, seed=seed)
    val_ds = data.pipeline(val, image_size, batch_size=batch)
    backbone.trainable = False
    features.compile_classifier(model, head_lr)
    timer = finetune.epoch_timer()
    first = model.fit(train_ds, validation_data=val_ds, epochs=head_epochs, verbose=verbose, shuffle=False,
                      class_weight=class_weight, callbacks=[early_stopping(patience), timer])  # the pipeline shuffles, seeded
    done = len(first.history["loss"])
    report = finetune.unfreeze_top(backbone, backbone_name, first_block, keep_batchnorm_frozen)
    steps = math.ceil(len(train) / batch)
    lr = warmup_cosine(fine_tune_lr, total_steps=steps * fine_tune_epochs,
                       warmup_steps=steps * warmup_epochs) if warmup_epochs else fine_tune_lr
    features.compile_classifier(model, lr)
    second = model.fit(train_ds, validation_data=val_ds, epochs=done + fine_tune_epochs, shuffle=False,
                       initial_epoch=done, verbose=verbose, class_weight=class_weight,
                       callbacks=[early_stopping(patience), timer])
    return finetune.join_histories(first, second, seconds=timer.seconds, unfreeze=report)


def accuracy(model, ds: data.ImageSet, image_size: int, batch_size: int = 64) -> float:
    """Accuracy of a pixel-input model on an ImageSet, batch by batch (thousands of images fit in memory)."""
    import tensorflow as tf

    if not len(ds):
        raise ValueError(f"Cannot evaluate on an empty split ({ds.name!r}, 0 images). "
                         "Fix: give the split images (see cl.splits.split).")
    right = 0
    with folders.naming_bad_files(ds.items):
        for x, y in data.pipeline(ds, image_size, batch_size=batch_size, cache=False):
            right += int(np.sum(np.argmax(model.predict_on_batch(tf.cast(x, tf.float32)), axis=1) == y.numpy()))
    return right / len(ds)
