"""Notebooks run on a learner's own image folder (COURSE_DATASET) instead of the course data, one layout each.

test_student_notebooks.py runs the notebooks on the course data. Each notebook that reads a learner's folder runs once
more on one, and the layouts are spread over them (the folder reader's unit tests in test_folders.py cover every
layout): 02 on a `train/` + `val/` folder (`test/` carved from train, and the notebook says so), as from the PyTorch
tutorial layout or a Kaggle download; 03's recipe part (to the end of the end-to-end two-stage run, graded checks
included) on a flat `<class>/<image>` folder with a nested subfolder; 06 on a flat folder with bad files and a small
class, where it must warn about the imbalance, export and reload the model, and leave the flowers-only claims unchecked;
07 on the `train/` + `val/` folder, shipping the capstone's winner for it (a small model stands in for 06's, so the
whole export path runs in seconds: every format, the pitfalls, the decisions and `course predict`'s agreement; the
claims about measured results are checked on the course data only, in test_student_notebooks.py).
"""

import pathlib

import pytest

from .conftest import execute_source_notebook, write_image


def train_val_folder(root: pathlib.Path) -> pathlib.Path:
    """`train/<class>/` with 10 images and `val/<class>/` with 3, three classes, no `test/`."""
    for split, n in (("train", 10), ("val", 3)):
        for c, cls in enumerate(("Ants", "Bees", "Wasps")):
            for i in range(n):
                write_image(root / split / cls / f"{cls}_{i}.jpg", size=(40, 56), seed=100 * c + 10 * len(split) + i)
    return root


def flat_folder(root: pathlib.Path, n: int = 9) -> pathlib.Path:
    """`<class>/` with `n` images each; Dogs keeps its last three in `Dogs/day2/` (they count for Dogs)."""
    for c, cls in enumerate(["Cats", "Dogs", "Owls"]):
        for i in range(n):
            sub = "day2/" if cls == "Dogs" and i >= n - 3 else ""
            write_image(root / cls / f"{sub}{cls}_{i}.jpg", size=(40, 56), seed=100 * c + i)
    return root


def folder_with_bad_files(root: pathlib.Path) -> pathlib.Path:
    """Three flat classes, one of them small, plus a corrupt image and a text file."""
    for c, (cls, n) in enumerate([("apples", 12), ("pears", 12), ("plums", 4)]):
        for i in range(n):
            write_image(root / cls / f"{cls}_{i}.jpg", size=(48, 64), seed=100 * c + i)
    (root / "pears" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (root / "apples" / "notes.txt").write_text("not an image")
    return root


def plant_capstone_winner(cache, folder):
    """A small model and a summary naming `folder` where 06 leaves its winner (07 ships it)."""
    import keras

    from course_lib import data

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.Conv2D(128, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="tiny_winner")
    (cache / "capstone").mkdir(parents=True)
    model.save(cache / "capstone" / "tiny_capstone.keras")
    source = data.load_folder(folder).source
    (cache / "capstone" / "summary.md").write_text(f"# Capstone results: insects\n\n**Data**: from `{source}`\n")


def capstone_results(text, cache):
    """06 writes its summary, and its results' heading does not say flowers."""
    assert "flowers" not in text.split("# Capstone results:")[1].split("\n")[0]
    assert (cache / "capstone" / "summary.md").is_file()


def shipped_formats(text, cache):
    """07 writes every format, and the class names inside the SavedModel too."""
    assert "[claim] FAIL" not in text
    shipped = cache / "07_export"
    assert {p.name for p in shipped.iterdir()} == {"model.keras", "savedmodel", "model_float32.tflite",
                                                   "model_int8.tflite", "class_names.json"}
    assert (shipped / "savedmodel" / "class_names.json").is_file()


# notebook: (folder maker, folder name, stop before this heading, lines it prints, before the run, checks after)
RUNS = {
    "02_feature_extraction": (
        train_val_folder, "insects", None,
        ["insects: 39 images, 3 classes (Ants=13, Bees=13, Wasps=13)", "Splits in the folder: train=30, val=9",
         "Your folder has no test split:", "Note: the claims about flowers are skipped",
         "[claim] PASS: in-model and cached-feature heads reach the same accuracy"], None, None),
    "03_fine_tuning": (
        flat_folder, "pets", "## A shortcut for exploring",
        ["pets: 27 images, 3 classes (Cats=9, Dogs=9, Owls=9)",  # Dogs/day2/ counted
         "Training images per class used / available: Cats ", "stage 2: epochs",
         "[claim] PASS: stage 2 moves only the unfrozen blocks, never BatchNormalization statistics"], None, None),
    "06_capstone": (
        folder_with_bad_files, "my_fruit", None,
        ["my_fruit: 28 images, 3 classes (apples=12, pears=12, plums=4)", "2 unreadable file(s) skipped",
         "WARNING: the largest class has 3.0x the images of the smallest", "On your data, LogME picks",
         "[claim] PASS: the reloaded .keras model predicts exactly like the trained one"], None, capstone_results),
    "07_export": (
        train_val_folder, "insects", None,
        ["model: the capstone's winner, tiny_capstone.keras; 32 px", "this model has no augmentation layers",
         "[claim] PASS: the reloaded SavedModel predicts exactly what the Keras model does",
         "[claim] PASS: course predict's top classes are this notebook's, for every format"],
        plant_capstone_winner, shipped_formats),
}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", sorted(RUNS))
def test_the_notebook_runs_on_your_folder(notebook, mirror_root, isolated_cache, tmp_path, monkeypatch):
    make, name, stop_before, expected, before, after = RUNS[notebook]
    folder = make(tmp_path / name)
    if before:
        before(isolated_cache, folder)
    monkeypatch.setenv("COURSE_DATASET", str(folder))
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    _, errors, text = execute_source_notebook(notebook, tmp_path, stop_before=stop_before)
    assert not errors, errors
    assert f"Using your dataset from COURSE_DATASET={folder}" in text
    missing = [line for line in expected if line not in text]
    assert not missing, f"{notebook} did not print: {missing}"
    if after:
        after(text, isolated_cache)
