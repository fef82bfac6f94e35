"""The backbone registry: shapes, blocks, preprocessing, real weights, clear errors."""

import numpy as np
import pytest

from course_lib import backbones, errors

ALL = backbones.names()


def test_registry_has_the_required_architectures():
    assert set(ALL) >= {"mobilenet_v2", "mobilenet", "efficientnet_b0", "resnet50",
                        "mobilenet_v3_small"}


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_blocks_without_weights(name):
    spec = backbones.get(name)
    model = backbones.load(name, 96, weights=None)
    assert model.output_shape == (None, spec.feature_dim)
    blocks = backbones.blocks(model, name)
    assert len(blocks) >= 10
    names = [b for b, _ in blocks]
    assert len(set(names)) == len(names), "each block appears once, in order"
    # every weighted layer above the stem belongs to exactly one block
    in_blocks = {id(layer) for _, layers in blocks for layer in layers}
    assert len(in_blocks) == sum(len(layers) for _, layers in blocks)
    assert not model.trainable and model.trainable_weights == []


def test_mobilenet_v2_block_names_follow_the_architecture():
    model = backbones.load("mobilenet_v2", 96, weights=None)
    names = backbones.block_names(model, "mobilenet_v2")
    assert names[0] == "expanded_conv" and names[-1] == "Conv_1"
    assert names[-2] == "block_16" and len(names) == 18


@pytest.mark.parametrize("name", ALL)
def test_preprocess_input_is_the_backbones_own(name):
    import importlib

    spec = backbones.get(name)
    fn = spec.preprocess_input
    assert fn is importlib.import_module(f"keras.applications.{spec.module}").preprocess_input
    x = np.full((1, 4, 4, 3), 255.0, dtype="float32")
    y = np.asarray(fn(x.copy()))
    if name.startswith("mobilenet_v2") or name == "mobilenet":
        assert np.allclose(y, 1.0)  # scaled to [-1, 1]


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match=r"Received: name='vgg16'.*mobilenet_v2"):
        backbones.get("vgg16")


def test_bad_image_size():
    with pytest.raises(ValueError, match="image_size must be an integer"):
        backbones.load("mobilenet_v2", 8, weights=None)


def test_weight_file_names_match_keras_for_native_and_fallback_sizes():
    spec = backbones.get("mobilenet_v2")
    assert spec.weights_filename(160).endswith("_1.0_160_no_top.h5")
    assert spec.weights_filename(144).endswith("_1.0_224_no_top.h5")  # Keras falls back to 224
    assert backbones.get("mobilenet").weights_filename(224, include_top=True) == "mobilenet_2_5_224_tf.h5"


def test_real_weights_from_the_mirror(mirror_root, monkeypatch, isolated_cache):
    monkeypatch.setenv("COURSE_MIRROR", str(mirror_root))
    model = backbones.load("mobilenet_v2", 224)
    random = backbones.load("mobilenet_v2", 224, weights=None)
    w_real = model.get_layer("Conv1").get_weights()[0]
    assert not np.allclose(w_real, random.get_layer("Conv1").get_weights()[0])
    # the file really is what Keras' imagenet loader reads: same numbers
    import keras

    direct = keras.applications.MobileNetV2(
        include_top=False, input_shape=(224, 224, 3),
        weights=str(mirror_root / "keras/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"))
    assert np.allclose(w_real, direct.get_layer("Conv1").get_weights()[0])


def test_size_without_offline_weights_says_which_work(mirror_root, monkeypatch, isolated_cache):
    monkeypatch.setenv("COURSE_MIRROR", str(mirror_root))
    with pytest.raises(errors.MissingResourceError,
                       match=r"image_size=160.*Sizes that work offline with this mirror: 224"):
        backbones.load("mobilenet_v2", 160)
    with pytest.raises(errors.MissingResourceError, match="efficientnet_b0"):
        backbones.load("efficientnet_b0", 224)


def test_classifier_predictions_from_mirror(mirror_root, monkeypatch, isolated_cache):
    import keras
    from sklearn.datasets import load_sample_image

    monkeypatch.setenv("COURSE_MIRROR", str(mirror_root))
    model = backbones.load_classifier("mobilenet", 224)
    img = keras.ops.image.resize(load_sample_image("china.jpg")[None].astype("float32"), (224, 224))
    preds = model.predict(backbones.get("mobilenet").preprocess_input(np.array(img)), verbose=0)
    top = backbones.decode_predictions(preds, top=5)[0]
    assert len(top) == 5 and all(isinstance(t[1], str) for t in top)
    assert top[0][2] >= top[-1][2]


def test_param_count():
    model = backbones.load("mobilenet", 96, weights=None)
    assert backbones.param_count(model) == model.count_params()
    assert backbones.param_count(model, trainable_only=True) == 0


def test_weights_file_keras_cannot_read_raises_the_course_error(tmp_path, monkeypatch, isolated_cache):
    """A valid HDF5 file that is not these weights: Keras' own read fails, the course names the file."""
    import h5py

    from course_lib import mirror

    path = tmp_path / "m" / mirror.RESOURCES["mobilenet@224"][0]
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"conv1"]
        f.create_group("conv1").create_dataset("kernel", data=np.zeros(4, "float32"))
    monkeypatch.setenv("COURSE_MIRROR", str(tmp_path / "m"))
    with pytest.raises(errors.CorruptResourceError,
                       match="Cannot read the ImageNet weights of MobileNet from") as info:
        backbones.load("mobilenet", 224)
    assert str(path) in str(info.value) and "re-copy it from the mirror source" in str(info.value)
    assert isinstance(info.value.__cause__, (KeyError, ValueError))
