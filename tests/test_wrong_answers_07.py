"""Common wrong answers to the exercises of 07_export fail its public or hidden tests; the right ones pass.

Each exercise is run on stand-ins the test builds: a tiny Keras model with augmentation and a preprocessing
layer (q1), a small uint8 image array (q2), a measured table (q3).
"""

import numpy as np
import pytest

from tests.wrong_answers import check

NB = "07_export"


def _cl():
    import course_lib as cl

    return cl


# ------------------------------------------------------------------ q1: the serving model


def _trained():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="pixels")
    x = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomZoom(0.2)], name="augment")(inputs)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(x)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="tiny")


def _chain(skip):
    import keras

    def serving_model(trained):
        inputs = keras.Input(trained.input_shape[1:])
        x = inputs
        for layer in trained.layers[1:]:
            x = x if skip(layer) else layer(x)
        return keras.Model(inputs, x)

    return serving_model


def _is_augmentation(layer):
    return layer.name == "augment" or type(layer).__name__.startswith("Random")


def _q1_ns(serving_model):
    import keras

    model = _trained()
    x_test = np.random.default_rng(1).integers(0, 256, (8, 8, 8, 3)).astype(np.uint8)
    return {"np": np, "keras": keras, "cl": _cl(), "model": model, "x_test": x_test,
            "serving_model": serving_model, "serving": serving_model(model)}


@pytest.mark.parametrize("wrong, kinds", [
    (lambda trained: trained, ("public", "hidden")),  # exported as trained: the augmentation stays in
    (_chain(lambda layer: _is_augmentation(layer) or layer.name == "preprocess"), ("public", "hidden")),  # raw pixels unscaled
    (_chain(lambda layer: layer.name == "augment"), ("hidden",)),  # a Random... layer outside the sub-model stays
], ids=["unchanged", "preprocessing dropped", "only the sub-model named augment"])
def test_07_q1_rejects_a_model_that_keeps_augmentation_or_loses_preprocessing(wrong, kinds):
    check(NB, "q1", _q1_ns(_chain(_is_augmentation)), _q1_ns(wrong), kinds=kinds)


def test_07_q1_rejects_new_layers_with_fresh_weights():
    import keras

    def rebuilt(trained):  # the same architecture, but new layers: the trained weights are lost
        keras.utils.set_random_seed(99)
        return _chain(_is_augmentation)(keras.models.clone_model(trained))

    failed = check(NB, "q1", _q1_ns(_chain(_is_augmentation)), _q1_ns(rebuilt))
    assert "not new ones" in failed["public"][0]


# ------------------------------------------------------------------ q2: the representative dataset


def _representative(images, count):
    for image in images[:count]:
        yield [np.asarray(image, dtype=np.float32)[None]]


def _q2_ns(fn):
    x_train = np.random.default_rng(2).integers(0, 256, (6, 5, 5, 3)).astype(np.uint8)
    return {"np": np, "x_train": x_train, "representative_dataset": fn}


def _whole_batch(images, count):
    yield [np.asarray(images[:count], dtype=np.float32)]


def _bare_array(images, count):
    for image in images[:count]:
        yield np.asarray(image, dtype=np.float32)[None]


def _preprocessed(images, count):
    for image in images[:count]:
        yield [np.asarray(image, dtype=np.float32)[None] / 127.5 - 1]


def _uint8(images, count):
    for image in images[:count]:
        yield [np.asarray(image)[None]]


def _every_image(images, count):
    for image in images:
        yield [np.asarray(image, dtype=np.float32)[None]]


def _by_index(images, count):  # slices past the end give empty batches when count > len(images)
    for i in range(count):
        yield [np.asarray(images[i:i + 1], dtype=np.float32)]


def _noise(images, count):
    for _ in range(min(count, len(images))):
        yield [np.random.default_rng(0).uniform(0, 255, (1,) + images.shape[1:]).astype(np.float32)]


@pytest.mark.parametrize("wrong, kinds", [
    (_whole_batch, ("public", "hidden")), (_bare_array, ("public", "hidden")), (_preprocessed, ("public", "hidden")),
    (_uint8, ("public", "hidden")), (_every_image, ("public", "hidden")), (_by_index, ("hidden",)),
    (_noise, ("public", "hidden")),
], ids=["whole batch", "no list", "preprocessed", "uint8", "count ignored", "past the end", "noise"])
def test_07_q2_rejects_the_common_generator_mistakes(wrong, kinds):
    check(NB, "q2", _q2_ns(_representative), _q2_ns(wrong), kinds=kinds)


# ------------------------------------------------------------------ q3: a format per target

TARGETS = {"phone": {"formats": ["litert_float32", "litert_int8"], "minimize": "latency_ms"},
           "browser": {"formats": ["litert_float32", "litert_int8"], "minimize": "size_bytes"},
           "server": {"formats": ["keras", "savedmodel", "litert_float32"], "minimize": "latency_ms"}}
TABLE = {"keras": {"size_bytes": 9.6e6, "latency_ms": 35.0, "test_accuracy": 0.66, "agreement": 1.0},
         "savedmodel": {"size_bytes": 19.9e6, "latency_ms": 20.0, "test_accuracy": 0.66, "agreement": 1.0},
         "litert_float32": {"size_bytes": 8.9e6, "latency_ms": 6.4, "test_accuracy": 0.66, "agreement": 1.0},
         "litert_int8": {"size_bytes": 2.7e6, "latency_ms": 1.1, "test_accuracy": 0.62, "agreement": 0.84}}


def _chooser(bar_from="keras", use_bar=True, measure=None, formats=None, none_when_empty=True):
    def choose_format(table, target):
        rule = TARGETS[target]
        bar = table[bar_from]["test_accuracy"] - 0.01 - 1e-9
        allowed = [f for f in (formats or rule["formats"]) if f in table and (not use_bar or table[f]["test_accuracy"] >= bar)]
        if not allowed:
            return None if none_when_empty else max(rule["formats"], key=lambda f: table[f]["test_accuracy"])
        return min(allowed, key=lambda f: table[f][measure or rule["minimize"]])

    return choose_format


def _q3_ns(fn):
    return {"np": np, "TARGETS": TARGETS, "MAX_LOSS": 0.01, "table": TABLE, "choose_format": fn,
            "decisions": {t: fn(TABLE, t) for t in TARGETS}}


@pytest.mark.parametrize("wrong, kinds", [
    (_chooser(use_bar=False), ("public", "hidden")),  # the smallest or fastest, whatever its accuracy
    (_chooser(measure="size_bytes"), ("hidden",)),  # every target minimizes the file size
    (_chooser(bar_from="litert_float32"), ("hidden",)),  # the bar against float32, not the Keras model
    (_chooser(formats=list(TABLE)), ("hidden",)),  # every format for every target
    (_chooser(none_when_empty=False), ("hidden",)),  # never None: ships a format below the bar
], ids=["no bar", "always size", "bar vs float32", "any format", "never None"])
def test_07_q3_rejects_rules_other_than_the_stated_one(wrong, kinds):
    check(NB, "q3", _q3_ns(_chooser()), _q3_ns(wrong), kinds=kinds)
