"""06_capstone with a learner's own image folder (COURSE_DATASET) instead of the course flowers.

test_student_notebooks.py already runs the notebook on the mirror's flowers. Here the whole notebook runs on a
small made-up folder (random images, three classes, one of them small, one corrupt file and
one text file): it must finish without an error, report what it skipped and warn about the
imbalance, export and reload the model, and leave the lesson's flowers-only claims unchecked.
"""

import pathlib

import pytest

from .conftest import execute_source_notebook, write_image


def _own_folder(root: pathlib.Path) -> pathlib.Path:
    for c, (cls, n) in enumerate([("apples", 12), ("pears", 12), ("plums", 4)]):
        for i in range(n):
            write_image(root / cls / f"{cls}_{i}.jpg", size=(48, 64), seed=100 * c + i)
    (root / "pears" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (root / "apples" / "notes.txt").write_text("not an image")
    return root


@pytest.mark.slow
def test_capstone_runs_on_your_own_folder(mirror_root, isolated_cache, tmp_path, monkeypatch):
    folder = _own_folder(tmp_path / "my_fruit")
    monkeypatch.setenv("COURSE_DATASET", str(folder))
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    _, errors, text = execute_source_notebook("06_capstone", tmp_path)
    assert not errors, errors
    assert f"Using your dataset from COURSE_DATASET={folder}" in text
    assert "my_fruit: 28 images, 3 classes (apples=12, pears=12, plums=4)" in text
    assert "2 unreadable file(s) skipped" in text
    assert "WARNING: the largest class has 3.0x the images of the smallest" in text
    assert "On your data, LogME picks" in text
    assert "[claim] PASS: the reloaded .keras model predicts exactly like the trained one" in text
    assert "flowers" not in text.split("# Capstone results:")[1].split("\n")[0]
    assert (isolated_cache / "capstone" / "summary.md").is_file()
