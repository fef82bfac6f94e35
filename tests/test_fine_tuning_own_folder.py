"""03_fine_tuning's recipe on a learner's own folder (COURSE_DATASET), as a learner would run it.

nbval runs the whole notebook on the course data. Here the recipe part (setup to the end of the
end-to-end two-stage run, graded checks included) runs on a generated `train/` + `val/` folder
with no `test/` split: it must finish without an error, say how many images it uses, pass its
graded checks and move only the unfrozen blocks in stage 2. The same runs on a flat
`<class>/<image>` folder.
"""

import pathlib

import pytest

from .conftest import execute_source_notebook, write_image

STOP = "## A shortcut for exploring"


def _train_val_folder(root: pathlib.Path, splits=(("train", 6), ("val", 3))) -> pathlib.Path:
    for split, n in splits:
        for c, cls in enumerate(["Cats", "Dogs", "Owls"]):
            for i in range(n):
                write_image(root / split / cls / f"{cls}_{i}.jpg", size=(40, 56), seed=100 * c + 10 * len(split) + i)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["train_val", "flat"])
def test_the_recipe_runs_on_your_folder(layout, mirror_root, isolated_cache, tmp_path, monkeypatch):
    splits = (("train", 6), ("val", 3)) if layout == "train_val" else (("", 9),)
    folder = _train_val_folder(tmp_path / "pets", splits)
    monkeypatch.setenv("COURSE_DATASET", str(folder))
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    _, errors, text = execute_source_notebook("03_fine_tuning", tmp_path, stop_before=STOP)
    assert not errors, errors
    assert f"Using your dataset from COURSE_DATASET={folder}" in text
    assert "Training images per class used / available: Cats " in text
    assert "[claim] PASS: stage 2 moves only the unfrozen blocks, never BatchNormalization statistics" in text
    assert "stage 2: epochs" in text
