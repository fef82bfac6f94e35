"""Shared fixtures and helpers: the mirror (skips cleanly when none is configured), tiny image folders and images."""

import os
import pathlib

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")  # every test draws off screen (not MPLBACKEND: executed notebooks inherit it)


@pytest.fixture
def mirror_root():
    """The configured offline mirror, or skip."""
    value = os.environ.get("COURSE_MIRROR")
    if not value or not pathlib.Path(value).is_dir():
        pytest.skip("needs COURSE_MIRROR (the README's offline route)")
    return pathlib.Path(value)


def pytest_collection_modifyitems(items):
    """Every notebook cell nbval runs is `slow`: `pytest -m "not slow"` is the unit-test fast lane."""
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def student_build(tmp_path_factory):
    """One `course student` build per test session, shared by every test that needs one: its folder."""
    from course_lib import notebooks, release

    out = tmp_path_factory.mktemp("student")
    release.build_student(out, notebooks.repo_root(pathlib.Path(__file__).parent))
    return out


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A private COURSE_CACHE for one test."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_image(path, size=(20, 20), mode="RGB", seed=0, fmt=None):
    """Write a small random image file."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": None}[mode]
    shape = size + ((channels,) if channels else ())
    arr = rng.integers(0, 255, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path, format=fmt)
    return path


def blocky_images(n=4, size=32, seed=0, block=8):
    """uint8 RGB images (n, size, size, 3) of random flat blocks (for the domain and adaptation tests)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(40, 215, (n, size // block, size // block, 3))
    return blocks.repeat(block, 1).repeat(block, 2).astype(np.uint8)


def bn_model():
    """A tiny frozen Keras model with two BatchNormalization layers."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(5, 3, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3, name="dense")(x))
    model.trainable = False
    return model


@pytest.fixture
def image_folder(tmp_path, isolated_cache):
    """A user folder: 2 classes x 6 images, one grayscale, one RGBA, one corrupt, one text file."""
    root = tmp_path / "my_images"
    for c, cls in enumerate(["cats", "dogs"]):
        for i in range(6):
            write_image(root / cls / f"{cls}_{i}.jpg", seed=10 * c + i)
    write_image(root / "cats" / "gray.png", mode="L", seed=99)
    write_image(root / "dogs" / "alpha.png", mode="RGBA", seed=98)
    (root / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "cats" / "notes.txt").write_text("not an image")
    return root


def execute_source_notebook(name, workdir, stop_before=None, timeout=600):
    """Execute notebooks/source/<name>.ipynb (up to the markdown cell starting with `stop_before`).

    Returns (notebook, errors, text): the executed notebook, its error outputs as (cell, name,
    value) and the text of every output (streams, plain and Markdown displays).
    """
    import nbformat
    from nbclient import NotebookClient

    from course_lib import notebooks

    root = notebooks.repo_root(pathlib.Path(__file__).parent)
    nb = nbformat.read(root / "notebooks" / "source" / f"{name}.ipynb", as_version=4)
    if stop_before:
        nb.cells = nb.cells[:next(i for i, c in enumerate(nb.cells)
                                  if c.cell_type == "markdown" and c.source.startswith(stop_before))]
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(workdir)}}).execute()
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "")
                     + o.get("data", {}).get("text/plain", "")
                     for c in nb.cells for o in c.get("outputs", []))
    return nb, errors, text
