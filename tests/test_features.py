"""The feature cache (key, atomic writes, rebuilds) and head training on features."""

import functools
import json
import os

import keras
import numpy as np
import pytest

from course_lib import backbones, data, features, splits

SIZE = 32


def tiny_backbone(seed=0, name="tiny", width=4):
    """A small deterministic 'backbone': conv -> global average pooling."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(width, 3, strides=2, activation="relu")(inputs)
    outputs = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, outputs, name=name)
    model.trainable = False
    return model


def scale(x):
    return x / 255.0


def other_scale(x):
    return x / 127.5 - 1.0


@pytest.fixture
def images(image_folder):
    return data.load_folder(image_folder)


def files_in(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_extract_shape_and_labels(images, isolated_cache):
    feats, labels = features.extract(tiny_backbone(), images, image_size=SIZE, preprocess=scale, verbose=0)
    assert feats.shape == (len(images), 4) and feats.dtype == np.float32
    assert np.array_equal(labels, images.labels)


def test_second_call_reads_the_cache_without_running_the_model(images, isolated_cache, monkeypatch):
    model = tiny_backbone()
    first, _ = features.extract(model, images, image_size=SIZE, preprocess=scale, verbose=0)
    monkeypatch.setattr(model, "predict", lambda *a, **k: pytest.fail("the cache was not used"))
    second, _ = features.extract(model, images, image_size=SIZE, preprocess=scale, verbose=0)
    assert np.array_equal(first, second)
    assert len(files_in(isolated_cache / "features")) == 1


def _key(model=None, ds=None, size=SIZE, preprocess=scale, images=None):
    return features.cache_key(model or tiny_backbone(), ds or images, size, preprocess)


def test_key_changes_with_each_factor(images, tmp_path):
    base = _key(images=images)
    assert base == _key(images=images), "the key is deterministic"
    changed = {
        "weights": _key(tiny_backbone(seed=1), images=images),
        "architecture": _key(tiny_backbone(width=5), images=images),
        "image_size": _key(size=SIZE + 8, images=images),
        "preprocess": _key(preprocess=other_scale, images=images),
        "preprocess (none)": _key(preprocess=None, images=images),
        "data": _key(ds=images.subset(range(len(images) - 1))),
    }
    for factor, key in changed.items():
        assert key != base, f"the key ignores {factor}"
        assert features.cache_path(key) != features.cache_path(base), f"same file despite {factor}"


def test_key_changes_when_an_image_file_changes(images):
    before = _key(images=images)
    path = images.items[0]
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert _key(images=images) != before


def test_key_tells_lambdas_and_partials_apart_but_is_stable(images):
    def key_of(fn):
        return features.cache_key(tiny_backbone(), images, SIZE, fn)["preprocess"]

    assert key_of(lambda x: x / 255.0) != key_of(lambda x: x / 127.5 - 1)
    assert key_of(functools.partial(np.multiply, 2.0)) != key_of(functools.partial(np.multiply, 3.0))
    assert key_of(lambda x: x / 255.0) == key_of(lambda x: x / 255.0)
    assert "0x" not in key_of(lambda x: (lambda y: y)(x)), "no memory addresses in keys"
    assert key_of("mobilenet_v2") != key_of("resnet50")


def test_key_is_stable_across_processes(images, image_folder):
    """Same key in a fresh interpreter: nothing in it depends on memory addresses."""
    import subprocess
    import sys

    code = ("import json,sys;from course_lib import data,features;"
            "import tests.test_features as t;ds=data.load_folder(sys.argv[1]);"
            "print(json.dumps(features.cache_key(t.tiny_backbone(),ds,t.SIZE,t.scale)))")
    out = subprocess.run([sys.executable, "-c", code, str(image_folder)], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)), check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    other = json.loads(out.stdout.strip().splitlines()[-1])
    assert other == features.cache_key(tiny_backbone(), images, SIZE, scale)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "wrong_key", "wrong_rows"])
def test_damaged_or_mismatched_file_is_rebuilt(images, isolated_cache, damage):
    model = tiny_backbone()
    good, _ = features.extract(model, images, image_size=SIZE, preprocess=scale, verbose=0)
    key = features.cache_key(model, images, SIZE, scale)
    path = features.cache_path(key)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a numpy file at all")
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "wrong_key":
        np.savez(path, features=np.zeros_like(good), labels=images.labels,
                 key=json.dumps({**key, "image_size": 999}, sort_keys=True))
    else:
        np.savez(path, features=good[:-1], labels=images.labels[:-1], key=json.dumps(key, sort_keys=True))
    again, _ = features.extract(model, images, image_size=SIZE, preprocess=scale, verbose=0)
    assert np.allclose(again, good), "damaged cache content was returned"
    with np.load(path) as f:  # and the file was repaired
        assert np.allclose(f["features"], good)
    assert files_in(path.parent) == [path.name], "temporary files left behind"


def test_failed_write_leaves_no_temp_file_and_no_cache(images, isolated_cache, monkeypatch):
    def broken_savez(file, **arrays):
        with open(file, "wb") as fh:
            fh.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        features.extract(tiny_backbone(), images, image_size=SIZE, preprocess=scale, verbose=0)
    assert files_in(isolated_cache / "features") == []


def test_cache_false_writes_nothing(images, isolated_cache):
    features.extract(tiny_backbone(), images, image_size=SIZE, preprocess=scale, cache=False, verbose=0)
    assert not (isolated_cache / "features").exists() or files_in(isolated_cache / "features") == []


def test_extract_splits_keeps_split_names(images, isolated_cache):
    parts = splits.split(images, seed=0, train=3, val=1, test=1)
    out = features.extract_splits(tiny_backbone(), parts, SIZE, scale, verbose=0)
    assert set(out) == {"train", "val", "test"}
    for name, (x, y) in out.items():
        assert len(x) == len(parts[name]) and np.array_equal(y, parts[name].labels)


def blobs(n_per_class=30, dim=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (classes, dim))
    y = np.repeat(np.arange(classes), n_per_class)
    return (centers[y] + rng.normal(0, 0.5, (len(y), dim))).astype("float32"), y


def test_train_head_learns_separable_features_and_is_reproducible():
    train, val = blobs(seed=0), blobs(seed=0, n_per_class=10)
    head, history = features.train_head(train, val, num_classes=3, epochs=30, learning_rate=1e-2, seed=3)
    assert features.accuracy(head, *val) >= 0.95
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    again, _ = features.train_head(train, val, num_classes=3, epochs=30, learning_rate=1e-2, seed=3)
    for a, b in zip(head.get_weights(), again.get_weights()):
        assert np.array_equal(a, b)


def test_train_head_rejects_labels_beyond_num_classes():
    x, y = blobs(classes=3)
    with pytest.raises(ValueError, match="Labels go up to 2 but num_classes=2"):
        features.train_head((x, y), num_classes=2, epochs=1)


def test_make_head_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes. Received: num_classes=1"):
        features.make_head(8, 1)


def test_frozen_classifier_trains_only_the_head():
    backbone = tiny_backbone()
    model = features.frozen_classifier(backbone, 3)
    head = model.get_layer("head")
    assert model.output_shape == (None, 3)
    assert backbones.param_count(model, trainable_only=True) == backbones.param_count(head)
    assert backbones.param_count(model) == backbones.param_count(head) + backbones.param_count(backbone)


def test_in_model_training_equals_training_on_cached_features(images, isolated_cache):
    """Same head init, same batches, same dropout masks: the same weights, not just similar."""
    backbone = tiny_backbone()
    parts = splits.split(images, seed=0, train=4, val=1, test=1)
    feats = features.extract_splits(backbone, parts, SIZE, scale, verbose=0)
    kw = dict(epochs=3, learning_rate=1e-2, batch_size=3, seed=5)
    head, h1 = features.train_head(feats["train"], feats["val"], num_classes=images.num_classes, **kw)
    model, h2 = features.train_in_model(backbone, parts["train"], val=parts["val"], image_size=SIZE,
                                        preprocess=scale, **kw)
    for a, b in zip(head.get_weights(), model.get_layer("head").get_weights()):
        assert np.allclose(a, b, atol=1e-5)
    assert np.allclose(h1.history["val_loss"], h2.history["val_loss"], atol=1e-5)


def test_feature_dataset_shuffles_like_the_image_pipeline(images):
    """The cached path sees batches in the same order as `data.pipeline(shuffle=True)`."""
    y = np.arange(len(images))
    tagged = images.subset(range(len(images)))
    tagged.labels = y
    keras.utils.set_random_seed(3)  # train_head and train_in_model both seed before building
    pipe = data.pipeline(tagged, 16, batch_size=4, shuffle=True, seed=7)
    keras.utils.set_random_seed(3)
    fd = features.feature_dataset(np.zeros((len(y), 1)), y, batch_size=4, shuffle=True, seed=7)
    epochs = [(np.concatenate([b.numpy() for _, b in pipe]), np.concatenate([b.numpy() for _, b in fd]))
              for _ in range(2)]
    for a, b in epochs:
        assert np.array_equal(a, b) and not np.array_equal(a, y)
    assert not np.array_equal(epochs[0][0], epochs[1][0]), "reshuffled each epoch"


def test_accuracy():
    class Fixed:
        def predict(self, x, verbose=0):
            return np.eye(3)[[0, 1, 2, 2]]

    assert features.accuracy(Fixed(), None, [0, 1, 2, 0]) == 0.75


def test_weights_digest_sees_a_single_changed_weight():
    model = tiny_backbone()
    before = features.weights_digest(model)
    w = model.weights[0]
    w.assign(w.numpy() + np.eye(1, w.numpy().size).reshape(w.shape).astype(w.dtype) * 1e-3)
    assert features.weights_digest(model) != before


def test_same_backbone_built_twice_has_the_same_key(images):
    """Keras names the second copy's layers `conv2d_1`, ...; the cache must still hit."""
    first, second = tiny_backbone(seed=4), tiny_backbone(seed=4)
    assert [layer.name for layer in first.layers] != [layer.name for layer in second.layers]
    assert features.cache_key(first, images, SIZE, scale) == features.cache_key(second, images, SIZE, scale)
