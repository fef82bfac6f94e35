"""The standard fine-tuning recipe, end to end on images.

Taught in `03_fine_tuning` (the learner writes it there first) and used by `06_capstone`:
augmentation layers inside the model, before the backbone (they travel with `model.save`
and do nothing at inference); the backbone called with `training=False`; stage 1 trains
the head with the backbone frozen; stage 2 unfreezes the top blocks by their names, keeps
every BatchNormalization layer frozen (in Keras 3, `fit()` replaces a `training=False`
recorded in a functional model by `training=True`, so only a frozen BatchNormalization layer
is sure to stay in inference mode), recompiles at a lower learning rate (optionally a
warm-up + cosine schedule) and continues from the last epoch with early stopping.
`fit_two_stages` is the course's one two-stage loop: on images here, on cached activations in
`cl.comparison` (03's grid).
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


def fit_two_stages(model, train, *, val, backbone_name: str, first_block, head_epochs: int,
                   fine_tune_epochs: int, image_size: int | None = None, head_lr: float = 1e-3,
                   fine_tune_lr: float = 1e-4, warmup_epochs: int = 0, patience: int = 3, batch_size: int = 32,
                   keep_batchnorm_frozen: bool = True, class_weight: dict | None = None, backbone=None,
                   head=None, steps_per_epoch: int | None = None, reuse: dict | None = None, seed: int = 0,
                   verbose: int = 0) -> finetune.TrainingRecord:
    """The course's two-stage loop: the head with the backbone frozen, then the blocks from `first_block` up.

    `train`/`val`: ImageSets (with `image_size`), (x, y) arrays or tf.data batches; the training
    images are shuffled with `seed`. Stage 2 recompiles at `fine_tune_lr` (after a warm-up of
    `warmup_epochs`, a cosine decay) and goes on from the last epoch; both stages stop early
    (`patience`, the best weights kept) and weight the loss by `class_weight` ({class index: weight}).
    `backbone` is the one nested in `model` unless given. `head=(head model, train, val)` is the CPU
    shortcut of 03's grid: stage 1 trains that head on the frozen backbone's cached features (the
    same training, without running the backbone), then `model`'s last layer takes its weights.
    `steps_per_epoch` is for repeating datasets; `reuse`: see `cl.features.compile_classifier`.
    """
    features.check_learning_rate(head_lr), features.check_learning_rate(fine_tune_lr)
    first, first_data = (model, (train, val)) if head is None else (_check_head(model, head[0]), head[1:])
    for m, (t, v) in {id(first): (first, first_data), id(model): (model, (train, val))}.values():
        finetune.check_labels(m, t), finetune.check_labels(m, v, "validation")
    backbone = find_backbone(model) if backbone is None else backbone
    batch = scale.global_batch_size(batch_size)
    train_ds, val_ds = _pipelines((train, val), image_size, batch, seed)
    first_ds = (train_ds, val_ds) if head is None else _pipelines(first_data, image_size, batch, seed)
    finetune.freeze(backbone)
    features.compile_classifier(first, head_lr, reuse=reuse)
    timer = finetune.epoch_timer()
    one = _fit(first, first_ds, epochs=head_epochs, initial_epoch=0, steps=steps_per_epoch, patience=patience,
               class_weight=class_weight, callbacks=[timer], verbose=verbose)
    done = len(one.history["loss"])
    for mine, trained in zip(model.layers[-1].variables, first.variables if head is not None else ()):
        mine.assign(trained)  # the head trained on features: its weights and dropout seeds
    report = finetune.unfreeze_top(backbone, backbone_name, first_block, keep_batchnorm_frozen)
    steps = steps_per_epoch or _batches_per_epoch(train, train_ds, batch)
    lr = warmup_cosine(fine_tune_lr, total_steps=steps * fine_tune_epochs,
                       warmup_steps=steps * warmup_epochs) if warmup_epochs else fine_tune_lr
    features.compile_classifier(model, lr, reuse=reuse)
    two = _fit(model, (train_ds, val_ds), epochs=fine_tune_epochs, initial_epoch=done, steps=steps_per_epoch,
               patience=patience, class_weight=class_weight, callbacks=[timer], verbose=verbose)
    return finetune.join_histories(one, two, seconds=timer.seconds, unfreeze=report)


def _pipelines(pair, image_size, batch: int, seed: int) -> tuple:
    """(train, val) as batches: ImageSets as image pipelines, (x, y) arrays as feature pipelines, tf.data as is."""
    out = []
    for d, shuffle in zip(pair, (True, False)):  # only the training data is shuffled
        if not isinstance(d, data.ImageSet):
            out.append(finetune.as_dataset(d, batch, shuffle=shuffle, seed=seed))
        elif image_size is None:
            raise ValueError("fit_two_stages() got ImageSets but no image size. Received: image_size=None. "
                             "Fix: pass image_size=<the backbone's input size>, e.g. image_size=224.")
        else:
            out.append(data.pipeline(d, image_size, batch_size=batch, shuffle=shuffle, seed=seed))
    return tuple(out)


def _batches_per_epoch(train, train_ds, batch: int) -> int:
    """Steps in one pass over the training data (for the warm-up schedule)."""
    if isinstance(train, (data.ImageSet, tuple, list)):
        return math.ceil(len(train if isinstance(train, data.ImageSet) else train[1]) / batch)
    steps = int(train_ds.cardinality())
    if steps < 1:
        raise ValueError(f"Cannot tell the steps per epoch of this dataset (cardinality {steps}: it repeats or "
                         "is unknown). Fix: pass steps_per_epoch=<batches in one epoch>.")
    return steps


def _fit(model, batches, *, epochs: int, initial_epoch: int, steps, patience: int, class_weight, callbacks,
         verbose: int):
    """One stage: `fit` from `initial_epoch`, early stopping on validation accuracy (the pipeline shuffles)."""
    return model.fit(batches[0], validation_data=batches[1], epochs=initial_epoch + epochs,
                     initial_epoch=initial_epoch, steps_per_epoch=steps, class_weight=class_weight, shuffle=False,
                     callbacks=[early_stopping(patience)] + callbacks, verbose=verbose)


def _check_head(model, head):
    """`head`, if it is built like the model's last layer (which takes its weights after stage 1); else an error."""
    shapes = [[tuple(v.shape) for v in m.variables] for m in (head, model.layers[-1])]
    if shapes[0] != shapes[1]:
        raise ValueError(f"head= must be the model's last layer's architecture. Received: a head with variables "
                         f"{shapes[0]}, a last layer {model.layers[-1].name!r} with {shapes[1]}. Fix: build the "
                         "model as cl.finetune.classifier(top, cl.features.make_head(...)) with the same head.")
    return head


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
