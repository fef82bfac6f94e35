"""02_feature_extraction on a learner's own `train/` + `val/` folder (no `test/`).

test_student_notebooks.py runs the notebooks on the course data. Each notebook that reads a learner's folder runs
once more on one, and the layouts are spread over them (the folder reader's unit tests in
test_folders.py cover every layout): here 02 runs end to end on a `train/` + `val/` folder
(`test/` is carved from train and the notebook says so), as a learner with a folder from the
PyTorch tutorial layout or a Kaggle download would; test_fine_tuning_own_folder.py runs 03 on a
flat `<class>/<image>` folder with a nested subfolder; test_capstone.py runs 06 on a flat
folder with bad files and a small class.
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


@pytest.mark.slow
def test_feature_extraction_runs_on_your_train_val_folder(mirror_root, isolated_cache, tmp_path, monkeypatch):
    folder = train_val_folder(tmp_path / "insects")
    monkeypatch.setenv("COURSE_DATASET", str(folder))
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    _, errors, text = execute_source_notebook("02_feature_extraction", tmp_path)
    assert not errors, errors
    assert f"Using your dataset from COURSE_DATASET={folder}" in text
    assert "insects: 39 images, 3 classes (Ants=13, Bees=13, Wasps=13)" in text
    assert "Splits in the folder: train=30, val=9" in text
    assert "Your folder has no test split:" in text
    assert "Note: the claims about flowers are skipped" in text
    assert "[claim] PASS: in-model and cached-feature heads reach the same accuracy" in text
