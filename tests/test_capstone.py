"""06_capstone with a learner's own image folder (COURSE_DATASET) instead of the course flowers.

test_student_notebooks.py already runs the notebook on the mirror's flowers. Here the whole notebook runs on a
small made-up folder (random images, three classes, one of them small, one corrupt file and
one text file): it must finish without an error, report what it skipped and warn about the
imbalance, export and reload the model, and leave the lesson's flowers-only claims unchecked.
"""

import pathlib

import numpy as np
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


def _q3_tests():
    """The public and the hidden test cells of 06's Exercise 3, in order, from the source notebook."""
    import json

    cells = json.loads((pathlib.Path(__file__).parents[1] / "notebooks/source/06_capstone.ipynb").read_text())["cells"]
    text = ["".join(c["source"]) for c in cells]
    start = next(i for i, t in enumerate(text) if t.startswith("# BEGIN QUESTION") and "name: q3" in t)
    end = next(i for i in range(start, len(text)) if text[i].startswith("# END TESTS"))
    tests = [t for c, t in zip(cells[start:end], text[start:end]) if c["cell_type"] == "code" and "TEST CONFIG" in t]
    return [t for t in tests if "hidden: true" not in t], [t for t in tests if "hidden: true" in t]


class _Fixed:
    """A model stand-in that predicts fixed classes."""

    def __init__(self, pred, k=2):
        self.probs = np.eye(k)[pred]

    def predict(self, x, **kwargs):
        return self.probs


def _judge(monkeypatch, ft_right, fe_right, export_choice, why):
    """Run q3's public and hidden tests on made-up per-image flags; returns which failed."""
    import course_lib as cl

    y = np.zeros(len(ft_right), int)
    monkeypatch.setattr(cl.data, "to_numpy", lambda ds, size: (np.zeros((len(y), 2, 2, 3), "uint8"), y))
    paired = cl.stats.paired_accuracy_gain(ft_right, fe_right)
    ns = {"cl": cl, "np": np, "val_gain": paired["gain"], "val_gain_se": paired["se"], "splits": {"val": None},
          "image_size": 2, "fe_model": _Fixed(1 - np.asarray(fe_right, int)),
          "ft_model": _Fixed(1 - np.asarray(ft_right, int)), "export_choice": export_choice, "why": why}
    public, hidden = _q3_tests()
    failed = []
    for kind, cells in (("public", public), ("hidden", hidden)):
        for code in cells:
            try:
                exec(code, dict(ns))
            except AssertionError as e:
                failed.append((kind, str(e)))
    return failed, paired


def _why(p):
    return f"fine-tuning gained {p['gain']:+.3f}, paired standard error {p['se']:.3f}"


def test_exercise_3_is_judged_by_the_paired_rule(monkeypatch):
    import course_lib as cl

    fe = np.array([True] * 30 + [False] * 10)
    within = fe.copy()
    within[30:33] = True  # fine-tuning right on 3 more images of 40: +0.075, 1.96 x se = 0.083
    beyond = fe.copy()
    beyond[30:40] = True  # 10 more: +0.25, far beyond
    p_within = cl.stats.paired_accuracy_gain(within, fe)
    p_beyond = cl.stats.paired_accuracy_gain(beyond, fe)
    assert p_within["gain"] < 1.96 * p_within["se"] and p_beyond["gain"] > 1.96 * p_beyond["se"]
    # the right choices, with the numbers cited, pass
    assert _judge(monkeypatch, within, fe, "feature extraction", _why(p_within))[0] == []
    assert _judge(monkeypatch, beyond, fe, "fine-tuning", _why(p_beyond))[0] == []
    # fine-tuning within the paired noise (the higher validation accuracy, or a test split that favoured it) fails
    failed, _ = _judge(monkeypatch, within, fe, "fine-tuning", _why(p_within))
    assert {k for k, _ in failed} == {"public", "hidden"} and "paired noise" in failed[0][1]
    # feature extraction when fine-tuning is better beyond the noise (say, because test accuracy said so) fails
    assert {k for k, _ in _judge(monkeypatch, beyond, fe, "feature extraction", _why(p_beyond))[0]} == {"public", "hidden"}
    # a why with a digit but without the measured gain and its standard error fails
    failed, _ = _judge(monkeypatch, within, fe, "feature extraction", "within the noise of 1 image, so the cheaper one")
    assert failed and all("export_choice" not in msg and "1.96 *" not in msg for _, msg in failed)
