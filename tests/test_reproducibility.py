"""One `cl.setup(seed)` call makes a run repeat exactly: features, trained heads, printed metrics."""

import pathlib

import nbformat
import numpy as np
import pytest

import course_lib as cl

ROOT = pathlib.Path(__file__).resolve().parents[1]


def feature_path(splits, backbone_name, image_size, weights, seed):
    """setup -> backbone -> extract (no cache) -> train a head; everything a rerun must repeat."""
    cl.setup("repro_test", seed=seed, silent=True)
    backbone = cl.backbones.load(backbone_name, image_size, weights=weights)
    feats = {name: cl.features.extract(backbone, ds, image_size=image_size, cache=False, verbose=0)
             for name, ds in splits.items()}
    head, history = cl.features.train_head(feats["train"], feats["val"], num_classes=splits["train"].num_classes,
                                           epochs=4, batch_size=8, seed=seed)
    return {"features": {k: f for k, (f, _) in feats.items()},
            "head_weights": [w.numpy() for w in head.weights], "history": history.history,
            "val_accuracy": cl.features.accuracy(head, *feats["val"])}


def train_val(splits):
    """Only the train and val splits (the test split is not needed here)."""
    return {"train": splits["train"], "val": splits["val"]}


def assert_identical(a, b):
    """Features, head weights, training history and accuracy are bit-for-bit equal."""
    for split in a["features"]:
        assert np.array_equal(a["features"][split], b["features"][split]), f"{split} features differ"
    assert len(a["head_weights"]) == len(b["head_weights"])
    for wa, wb in zip(a["head_weights"], b["head_weights"]):
        assert np.array_equal(wa, wb), "trained head weights differ"
    assert a["history"] == b["history"]
    assert a["val_accuracy"] == b["val_accuracy"]


def test_feature_path_repeats_exactly_and_depends_on_the_seed(image_folder):
    """Random-init backbone: the seed alone decides the weights, so reruns must match bit for bit."""
    ds = cl.data.load(str(image_folder), allow_override=False, verbose=False)
    splits = train_val(cl.splits.split(ds, seed=0, train=4, val=2, test=1))
    first = feature_path(splits, "mobilenet", 32, None, seed=5)
    second = feature_path(splits, "mobilenet", 32, None, seed=5)
    assert_identical(first, second)
    other = feature_path(splits, "mobilenet", 32, None, seed=6)
    assert not np.array_equal(first["features"]["train"], other["features"]["train"]), \
        "a different seed gave the same random-init features: the comparison above could not fail"


@pytest.mark.slow
def test_imagenet_feature_path_repeats_exactly(mirror_root, isolated_cache):
    """The notebooks' real path: ImageNet MobileNetV2 on flowers, extracted twice without cache."""
    ds = cl.data.load("flowers", allow_override=False, verbose=False)
    splits = train_val(cl.splits.split(ds, seed=0, train=8, val=4, test=1))
    first = feature_path(splits, "mobilenet_v2", 112, "imagenet", seed=11)
    second = feature_path(splits, "mobilenet_v2", 112, "imagenet", seed=11)
    assert_identical(first, second)
    assert first["features"]["train"].shape == (40, 1280)
    assert np.std(first["features"]["train"]) > 0, "features are constant: nothing was extracted"


TINY_CELLS = [
    'import course_lib as cl\ncfg = cl.setup("repro_tiny")',
    "import keras\nimport numpy as np\nimport tensorflow as tf\n"
    "x = np.random.normal(size=(96, 8)).astype('float32')  # seeded by cl.setup\n"
    "y = (x[:, 0] + 0.5 * np.random.normal(size=96) > 0).astype('int32')\n"
    "ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96).batch(16)  # unseeded shuffle\n"
    "model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation='relu'),\n"
    "                          keras.layers.Dropout(0.3), cl.scale.output_layer(2)])\n"
    "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])\n"
    "history = model.fit(ds, epochs=3, verbose=0)",
    "cl.report.metric('tiny.loss', history.history['loss'][-1], fmt='.17g')\n"
    "cl.report.metric('tiny.accuracy', history.history['accuracy'][-1], fmt='.17g')\n"
    "cl.report.metric('tiny.weight_sum', float(model.weights[0].numpy().sum()), fmt='.17g')",
]


def tiny_notebook(path: pathlib.Path) -> pathlib.Path:
    """Write a three-cell notebook: setup, seeded data + model + training, full-precision metrics."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in TINY_CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def metric_lines(path: pathlib.Path) -> list[str]:
    """Execute a notebook in a fresh kernel and return the `[metric]` lines it printed."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    return [line for line in text.splitlines() if line.startswith("[metric] ")]


@pytest.mark.slow
def test_a_notebook_prints_the_same_metrics_on_a_rerun(tmp_path, monkeypatch, isolated_cache):
    monkeypatch.delenv("COURSE_METRICS_FILE", raising=False)
    monkeypatch.setenv("CI", "true")
    path = tiny_notebook(tmp_path / "tiny.ipynb")
    first, second = metric_lines(path), metric_lines(path)
    assert len(first) == 3, first
    assert first == second


@pytest.mark.slow
def test_setup_notebook_prints_the_same_metrics_on_a_rerun(tmp_path, monkeypatch, mirror_root):
    source = ROOT / "notebooks" / "source" / "00_setup.ipynb"
    assert source.is_file(), f"{source} is missing"
    monkeypatch.delenv("COURSE_METRICS_FILE", raising=False)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    first, second = metric_lines(source), metric_lines(source)
    assert first, "00_setup printed no [metric] lines: a rerun cannot be compared (a metric went missing)"
    assert first == second
