"""02_feature_extraction and 06_capstone on a learner's own folder, in both accepted layouts.

nbval runs the notebooks on the course data; test_capstone.py runs 06 on a flat folder with bad
files and test_fine_tuning_own_folder.py runs 03 on a `train/` + `val/` folder. Here 02 runs
end to end on a flat `<class>/<image>` folder and on a `train/` + `val/` folder (no `test/`:
it is carved from train and the notebook says so), and 06 runs on the `train/` + `val/`
folder, as a learner with a folder from the PyTorch tutorial layout or a Kaggle download would.
"""

import pathlib

import pytest

from .conftest import execute_source_notebook, write_image

CLASSES = ("Ants", "Bees", "Wasps")


def train_val_folder(root: pathlib.Path) -> pathlib.Path:
    """`train/<class>/` with 10 images and `val/<class>/` with 3, three classes, no `test/`."""
    for split, n in (("train", 10), ("val", 3)):
        for c, cls in enumerate(CLASSES):
            for i in range(n):
                write_image(root / split / cls / f"{cls}_{i}.jpg", size=(40, 56), seed=100 * c + 10 * len(split) + i)
    return root


def flat_folder(root: pathlib.Path) -> pathlib.Path:
    """`<class>/` with 14 images each (one class keeps part of them in a subfolder)."""
    for c, cls in enumerate(CLASSES):
        for i in range(14):
            sub = "day2/" if cls == "Bees" and i >= 10 else ""
            write_image(root / cls / f"{sub}{cls}_{i}.png", size=(48, 40), seed=300 + 20 * c + i)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["flat", "train_val"])
def test_feature_extraction_runs_on_your_folder(layout, mirror_root, isolated_cache, tmp_path, monkeypatch):
    make = flat_folder if layout == "flat" else train_val_folder
    folder = make(tmp_path / "insects")
    monkeypatch.setenv("COURSE_DATASET", str(folder))
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    _, errors, text = execute_source_notebook("02_feature_extraction", tmp_path)
    assert not errors, errors
    assert f"Using your dataset from COURSE_DATASET={folder}" in text
    n = 14 if layout == "flat" else 13
    assert f"insects: {3 * n} images, 3 classes (Ants={n}, Bees={n}, Wasps={n})" in text
    if layout == "train_val":
        assert "Splits in the folder: train=30, val=9" in text
        assert "Your folder has no test split:" in text
    assert "Note: the claims about flowers are skipped" in text
    assert "[claim] PASS: in-model and cached-feature heads reach the same accuracy" in text


@pytest.mark.slow
def test_capstone_runs_on_a_train_val_folder(mirror_root, isolated_cache, tmp_path, monkeypatch):
    folder = train_val_folder(tmp_path / "insects")
    monkeypatch.setenv("COURSE_DATASET", str(folder))
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    _, errors, text = execute_source_notebook("06_capstone", tmp_path)
    assert not errors, errors
    assert "Splits in the folder: train=30, val=9" in text
    assert "Your folder has no test split:" in text
    assert "[claim] PASS: the reloaded .keras model predicts exactly like the trained one" in text
