"""03_fine_tuning's recipe on a learner's own folder (COURSE_DATASET), as a learner would run it.

test_student_notebooks.py runs the whole notebook on the course data. Here the recipe part (setup to the end of the
end-to-end two-stage run, graded checks included) runs on a generated flat `<class>/<image>`
folder, one class keeping part of its images in a subfolder (they count for that class): it
must finish without an error, say how many images it uses, pass its graded checks and move
only the unfrozen blocks in stage 2. (02 runs on a `train/` + `val/` folder in
test_own_folder_notebooks.py; the folder reader's unit tests cover every layout.)
"""

import pathlib

import pytest

from .conftest import execute_source_notebook, write_image

STOP = "## A shortcut for exploring"


def _flat_folder(root: pathlib.Path, n: int = 9) -> pathlib.Path:
    """`<class>/` with `n` images each; Dogs keeps its last three in `Dogs/day2/`."""
    for c, cls in enumerate(["Cats", "Dogs", "Owls"]):
        for i in range(n):
            sub = "day2/" if cls == "Dogs" and i >= n - 3 else ""
            write_image(root / cls / f"{sub}{cls}_{i}.jpg", size=(40, 56), seed=100 * c + i)
    return root


@pytest.mark.slow
def test_the_recipe_runs_on_your_flat_folder(mirror_root, isolated_cache, tmp_path, monkeypatch):
    folder = _flat_folder(tmp_path / "pets")
    monkeypatch.setenv("COURSE_DATASET", str(folder))
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    _, errors, text = execute_source_notebook("03_fine_tuning", tmp_path, stop_before=STOP)
    assert not errors, errors
    assert f"Using your dataset from COURSE_DATASET={folder}" in text
    assert "pets: 27 images, 3 classes (Cats=9, Dogs=9, Owls=9)" in text  # Dogs/day2/ counted
    assert "Training images per class used / available: Cats " in text
    assert "[claim] PASS: stage 2 moves only the unfrozen blocks, never BatchNormalization statistics" in text
    assert "stage 2: epochs" in text
