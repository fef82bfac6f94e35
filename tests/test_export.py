"""cl.export and `course predict` on a tiny generated model and tiny generated images (no fixtures on disk)."""

import numpy as np
import pytest

from course_lib import errors, export
from course_lib.tools import cli

SIZE = 8
CLASSES = ["cat", "dog", "fox"]


def _tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(len(CLASSES), activation="softmax")(x))


def _pixels(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The tiny model in all four formats, with class names beside each, and three PNG files."""
    from PIL import Image

    root = tmp_path_factory.mktemp("shipped")
    model = _tiny_model()
    paths = {"keras": root / "model.keras", "savedmodel": root / "savedmodel",
             "litert_float32": root / "model_float32.tflite", "litert_int8": root / "model_int8.tflite"}
    model.save(paths["keras"])
    model.export(str(paths["savedmodel"]), verbose=False)
    export.to_litert(paths["savedmodel"], paths["litert_float32"])
    calibration = _pixels(32, seed=1).astype("float32")
    export.to_litert(paths["savedmodel"], paths["litert_int8"],
                     representative=lambda: ([calibration[i:i + 1]] for i in range(len(calibration))))
    for path in paths.values():
        export.save_class_names(path, CLASSES, SIZE)
    images = []
    for i, img in enumerate(_pixels(3, seed=2)):
        images.append(root / f"img{i}.png")
        Image.fromarray(img).save(images[-1])
    return model, paths, images


def test_every_format_loads_and_predicts_like_keras(shipped):
    model, paths, images = shipped
    x = export.load_images(images, SIZE)
    assert x.dtype == np.uint8 and x.shape == (3, SIZE, SIZE, 3)
    want = np.asarray(model.predict_on_batch(x.astype("float32")))
    for name, path in paths.items():
        predict, kind = export.load(path)
        got = predict(x)
        assert got.shape == want.shape, (name, got.shape)
        tolerance = 0.05 if name == "litert_int8" else 1e-4  # int8: quantized weights and activations
        assert np.abs(got - want).max() < tolerance, (name, np.abs(got - want).max())
        assert kind == ("litert" if name.startswith("litert") else name)


def test_int8_is_integer_with_raw_pixel_input_and_smaller(shipped):
    _, paths, _ = shipped
    lite = export.LiteRTModel(paths["litert_int8"])
    assert lite.input["dtype"] == np.uint8, "raw pixels go in as they are"
    scale, zero = lite.input["quantization"]
    assert abs(scale - 1.0) < 0.02 and zero == 0, (scale, zero)  # calibrated on 0..255 pixels
    assert export.LiteRTModel(paths["litert_float32"]).input["dtype"] == np.float32
    assert export.size_bytes(paths["savedmodel"]) > 0
    assert export.interpreter_name() in ("ai_edge_litert", "tf.lite")


def test_class_names_travel_with_each_format(shipped):
    _, paths, _ = shipped
    assert (paths["savedmodel"] / export.CLASS_FILE).is_file(), "inside the SavedModel folder"
    for path in paths.values():
        assert export.read_class_names(path) == (CLASSES, SIZE)


def test_class_names_must_be_distinct_and_present(tmp_path):
    with pytest.raises(ValueError, match="distinct"):
        export.save_class_names(tmp_path / "m.keras", ["a", "a"], 8)
    with pytest.raises(FileNotFoundError, match="save_class_names"):
        export.read_class_names(tmp_path / "m.keras")
    (tmp_path / export.CLASS_FILE).write_text("[1, 2]")
    with pytest.raises(ValueError, match="class_names"):
        export.read_class_names(tmp_path / "m.keras")


def test_format_of_names_what_is_allowed(tmp_path):
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match="Allowed: a .keras file"):
        export.format_of(tmp_path / "model.h5")
    with pytest.raises(ValueError, match="saved_model.pb"):
        export.format_of(tmp_path)
    with pytest.raises(FileNotFoundError, match="No model"):
        export.format_of(tmp_path / "missing.keras")


def test_latency_is_a_median_of_the_calls():
    calls = []
    ms = export.latency_ms(lambda x: calls.append(x.shape), _pixels(2), calls=7, warmup=2)
    assert len(calls) == 9 and calls[0] == (1, SIZE, SIZE, 3), "batch 1, warm-up calls included"
    assert 0 <= ms < 1000
    with pytest.raises(ValueError, match="calls"):
        export.latency_ms(lambda x: x, _pixels(1), calls=0)


def test_top_classes_orders_and_checks_length():
    assert export.top_classes([0.1, 0.7, 0.2], CLASSES, k=2) == [("dog", pytest.approx(0.7)), ("fox", pytest.approx(0.2))]
    with pytest.raises(ValueError, match="3 class names"):
        export.top_classes([0.5, 0.5], CLASSES)


def test_to_litert_refuses_a_representative_that_is_not_callable(shipped):
    _, paths, _ = shipped
    with pytest.raises(TypeError, match="lambda"):
        export.to_litert(paths["savedmodel"], paths["savedmodel"].parent / "x.tflite", representative=[1, 2])


def test_course_predict_prints_the_same_top_class_for_every_format(shipped, capsys):
    model, paths, images = shipped
    want = np.asarray(model.predict_on_batch(export.load_images(images, SIZE).astype("float32"))).argmax(1)
    for name, path in paths.items():
        assert cli.main(["predict", str(path), *map(str, images), "--top", "2"]) == 0
        out = capsys.readouterr().out.splitlines()
        firsts = [out[i + 1].split()[0] for i in range(0, len(out), 3)]
        assert len(out) == 3 * len(images) and out[0] == str(images[0]), out
        assert firsts == [CLASSES[k] for k in want], (name, firsts)


def test_course_predict_explains_a_bad_image_and_an_unknown_model(shipped, tmp_path, capsys):
    _, paths, images = shipped
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    assert cli.main(["predict", str(paths["keras"]), str(images[0]), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "notes.jpg" in err and "Received" in err and "Fix" in err, err
    unknown = tmp_path / "model.onnx"
    unknown.write_bytes(b"\0")
    assert cli.main(["predict", str(unknown), str(images[0])]) == 2
    err = capsys.readouterr().err
    assert "model.onnx" in err and "Allowed" in err and "Fix" in err, err
    assert cli.main(["predict", str(paths["keras"]), str(tmp_path / "missing.png")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_load_images_raises_the_course_error(tmp_path):
    bad = tmp_path / "a.png"
    bad.write_bytes(b"\x89PNG broken")
    with pytest.raises(errors.BadImageError, match="a.png"):
        export.load_images([bad], SIZE)


def test_a_model_with_augmentation_does_not_convert_and_the_error_says_why(tmp_path):
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.export(str(tmp_path / "sm"), verbose=False)
    with pytest.raises(export.ConversionError, match="augmentation") as info:
        export.to_litert(tmp_path / "sm", tmp_path / "m.tflite")
    assert "Received" in str(info.value) and "tf.Stateless" in str(info.value), info.value
