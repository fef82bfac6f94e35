"""07_export on a learner's `train/` + `val/` folder, shipping the capstone's winner for that folder.

The capstone (06) leaves its winner in COURSE_CACHE/capstone/ with a summary naming the folder; 07 ships that
model instead of training one. Here a small model stands in for the winner (06 itself runs in test_capstone.py),
so the notebook's whole export path runs on a learner's folder in seconds: every format, the pitfalls, the
decisions and `course predict`'s agreement with the notebook (the lesson's claims about measured results are
checked on the course data only, in test_student_notebooks.py).
"""

import pytest

from .conftest import execute_source_notebook
from .test_own_folder_notebooks import train_val_folder


def _plant_capstone(cache, folder):
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


@pytest.mark.slow
def test_export_ships_the_capstone_winner_of_your_folder(mirror_root, isolated_cache, tmp_path, monkeypatch):
    folder = train_val_folder(tmp_path / "insects")
    _plant_capstone(isolated_cache, folder)
    monkeypatch.setenv("COURSE_DATASET", str(folder))
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    _, errors, text = execute_source_notebook("07_export", tmp_path)
    assert not errors, errors
    assert "model: the capstone's winner, tiny_capstone.keras; 32 px" in text
    assert "[claim] PASS: the reloaded SavedModel predicts exactly what the Keras model does" in text
    assert "[claim] PASS: course predict's top classes are this notebook's, for every format" in text
    assert "this model has no augmentation layers" in text
    assert "[claim] FAIL" not in text
    shipped = isolated_cache / "07_export"
    assert {p.name for p in shipped.iterdir()} == {"model.keras", "savedmodel", "model_float32.tflite",
                                                   "model_int8.tflite", "class_names.json"}
    assert (shipped / "savedmodel" / "class_names.json").is_file()
