"""Issue 30: odd folders and bad arguments get a clear message or the correct behaviour."""

import os

import pytest

from course_lib import data, errors, folders, splits

from .conftest import write_image


def _classes(root, names=("cats", "dogs"), n=3):
    for c, cls in enumerate(names):
        for i in range(n):
            write_image(root / cls / f"{i}.png", seed=10 * c + i)
    return root


def test_a_folder_with_val_and_test_but_no_train_is_never_trained_on_test(tmp_path, isolated_cache):
    for part in ("val", "test"):
        _classes(tmp_path / "ds" / part)
    ds = data.load_folder(tmp_path / "ds")
    with pytest.raises(errors.EmptySplitError, match=r"no train split.*Fix: add a train/ folder"):
        splits.split(ds)


@pytest.mark.parametrize("kwargs, expected", [
    ({"val": -1}, r"val must be a whole number >= 0.*Received: val=-1"),
    ({"val": "2"}, r"val must be a whole number >= 0.*Received: val='2' \(str\)"),
    ({"train": -2}, r"train must be a whole number >= 0"),
    ({"seed": -5}, r"-5"),
    ({"val_fraction": 1.5}, r"val_fraction must be a fraction.*Received: val_fraction=1.5"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, r"must leave images to train on"),
])
def test_split_refuses_bad_arguments_before_overlapping_parts(tmp_path, isolated_cache, kwargs, expected):
    ds = data.load_folder(_classes(tmp_path / "ds", n=6))
    with pytest.raises(ValueError, match=expected):
        splits.split(ds, **kwargs)


@pytest.mark.parametrize("size, expected", [(0, r"image_size=0 \(int\)"), ("224", r"image_size='224' \(str\)")])
def test_pipeline_refuses_a_bad_image_size(tmp_path, isolated_cache, size, expected):
    ds = data.load_folder(_classes(tmp_path / "ds"))
    with pytest.raises(ValueError, match=rf"pipeline\(\): image_size must be a whole number >= 1\. Received: {expected}"):
        data.pipeline(ds, size)


def test_a_symlinked_class_folder_is_read_and_a_broken_link_is_skipped(tmp_path, isolated_cache):
    root = _classes(tmp_path / "ds")
    _classes(tmp_path / "elsewhere", names=("birds",))
    (root / "birds").symlink_to(tmp_path / "elsewhere" / "birds")
    (root / "dogs" / "more").symlink_to(tmp_path / "elsewhere" / "birds")  # a linked subfolder: dogs too
    (root / "cats" / "gone.png").symlink_to(tmp_path / "no_such_file.png")
    (root / "cats" / "loop").symlink_to(root / "cats")
    ds = data.load_folder(root)
    assert ds.counts() == {"birds": 3, "cats": 3, "dogs": 6}
    assert any("gone.png" in p and "broken link" in r for p, r in ds.skip_reasons.items())


def test_a_class_folder_named_test_beside_class_folders_is_explained(tmp_path, isolated_cache):
    root = _classes(tmp_path / "ds", names=("cats", "test"))
    with pytest.raises(ValueError, match=r"mixes class folders \(cats\) with test/.*Fix: rename test/"):
        folders.scan(root)


def test_a_name_that_is_not_utf8_is_named_with_a_fix(tmp_path, isolated_cache):
    root = _classes(tmp_path / "ds")
    bad = os.path.join(os.fsencode(root), b"caf\xe9")
    os.mkdir(bad)
    write_image(tmp_path / "x.png")
    os.replace(tmp_path / "x.png", os.path.join(bad, b"1.png"))
    with pytest.raises(ValueError, match=r"is not valid UTF-8\. Received: b'caf\\xe9'.*Fix: rename it"):
        data.load_folder(root)


def test_a_class_index_with_other_keys_and_a_truncated_npz_are_named_corrupt(tmp_path, monkeypatch, isolated_cache):
    import json

    import numpy as np

    from course_lib import backbones, mirror

    root = tmp_path / "mirror"
    index = root / mirror.RESOURCES["class_index"][0]
    index.parent.mkdir(parents=True)
    index.write_text(json.dumps({f"n{i}": ["x", "y"] for i in range(1000)}))
    usps = root / mirror.RESOURCES["usps"][0]
    usps.parent.mkdir(parents=True)
    np.savez(usps, x_train=np.zeros((50, 16, 16), np.uint8), y_train=np.zeros(50), x_test=np.zeros((5, 16, 16)),
             y_test=np.zeros(5))
    usps.write_bytes(usps.read_bytes()[:3000])
    monkeypatch.setenv("COURSE_MIRROR", str(root))
    with pytest.raises(errors.CorruptResourceError, match=r"imagenet_class_index\.json: expected the 1000 .*Fix:"):
        backbones.decode_predictions(np.zeros((1, 1000)))
    with pytest.raises(errors.CorruptResourceError, match=r"Cannot read the usps digits from .*usps\.npz.*Fix:"):
        data.load_digits("usps")


@pytest.mark.parametrize("kind", ["file", "proc"])
def test_an_unwritable_course_cache_is_named_with_the_fix(kind, tmp_path, monkeypatch):
    import pathlib

    from course_lib import config

    target = pathlib.Path("/proc/course-cache")  # /proc takes no new folder, not even from root
    if kind == "file":
        target = tmp_path / "cache.txt"
        target.write_text("not a folder")
    monkeypatch.setenv("COURSE_CACHE", str(target))
    with pytest.raises(ValueError) as info:
        config.cache_dir()
    text = str(info.value)
    assert f"Received: COURSE_CACHE={target}" in text and "Fix: set COURSE_CACHE to a writable folder" in text
