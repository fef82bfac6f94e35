"""A learner's own folder: layouts, ignored files, small classes, file checks and clear errors.

Every folder is generated here from tiny random images (no binary fixtures).
"""

import io
import json
import types

import numpy as np
import pytest

from course_lib import data, errors, folders, splits

from .conftest import write_image


def make(root, layout: dict, size=(12, 12)):
    """layout: {'train/cats': 5, ...} -> that many small JPEGs in each folder."""
    for folder, n in layout.items():
        for i in range(n):
            write_image(root / folder / f"img{i}.jpg", size=size, seed=hash((folder, i)) % 1000)
    return root


def test_split_names_are_case_insensitive_with_aliases(tmp_path, isolated_cache, capsys):
    root = make(tmp_path / "ds", {"Train/a": 6, "Train/b": 6, "VALID/a": 2, "VALID/b": 2})
    ds = data.load_folder(root)
    assert sorted(set(ds.splits)) == ["train", "val"]
    parts = splits.split(ds, seed=0, test=1)
    assert "no test split: 2 images were carved from train" in capsys.readouterr().out
    assert [len(parts[k]) for k in ("train", "val", "test")] == [10, 4, 2]
    assert parts["test"].part == "test" and parts["test"].counts() == {"a": 1, "b": 1}
    assert not set(parts["train"].items) & set(parts["test"].items)


def test_validation_and_test_folders_count_as_the_same_split(tmp_path, isolated_cache):
    root = make(tmp_path / "ds", {"train/a": 3, "train/b": 3, "val/a": 1, "val/b": 1,
                                  "validation/a": 1, "validation/b": 1})
    with pytest.raises(ValueError, match="name the same split \\(val\\): val, validation"):
        data.load_folder(root)


def test_classes_that_differ_between_splits_are_listed(tmp_path, isolated_cache):
    root = make(tmp_path / "ds", {"train/a": 3, "train/b": 3, "train/c": 3, "val/a": 2, "val/b": 2})
    with pytest.raises(ValueError, match="different classes: val/ lacks c"):
        data.load_folder(root)


def test_nested_images_hidden_files_macosx_and_extra_folders(tmp_path, isolated_cache, capsys):
    root = make(tmp_path / "ds", {"train/a": 3, "train/b/2023/june": 3, "val/a": 2, "val/b": 2,
                                  "train/__MACOSX/a": 2, "notes/a": 2, "val/.thumbs": 2})
    write_image(root / "train" / "a" / ".hidden.jpg")
    (root / "val" / "b" / ".DS_Store").write_bytes(b"\0\0")
    ds = data.load(str(root), allow_override=False)
    out = capsys.readouterr().out
    assert ds.class_names == ["a", "b"] and ds.counts() == {"a": 5, "b": 5}
    assert not ds.skipped  # hidden files are ignored, not skipped
    assert "Ignored folder(s) next to the splits (not train/val/test): notes." in out
    assert any("2023/june" in p for p in ds.items)  # read recursively


def test_flat_folder_of_classes_with_loose_images(tmp_path, isolated_cache, capsys):
    root = make(tmp_path / "ds", {"a": 4, "b": 4, "__MACOSX/a": 1, ".cache": 1})
    write_image(root / "loose.jpg")
    ds = data.load(str(root), allow_override=False)
    assert ds.class_names == ["a", "b"] and ds.splits is None
    assert "Ignored 1 image(s) directly in" in capsys.readouterr().out


def test_classes_one_level_down_get_a_hint(tmp_path, isolated_cache):
    root = make(tmp_path / "zip", {"my_photos/a": 2, "my_photos/b": 2})
    with pytest.raises(ValueError, match="one level down: try COURSE_DATASET=.*my_photos"):
        data.load_folder(root)


def test_a_folder_without_a_usable_image_is_never_a_class(tmp_path, isolated_cache):
    root = make(tmp_path / "ds", {"a": 3, "b": 3})
    (root / "c").mkdir()
    (root / "c" / "readme.txt").write_text("nothing here")
    with pytest.raises(ValueError, match="No usable image in class folder\\(s\\) c .*readme.txt: not an image"):
        data.load_folder(root)


def test_a_class_with_one_image_is_an_error(tmp_path, isolated_cache):
    root = make(tmp_path / "ds", {"a": 3, "b": 1})
    with pytest.raises(ValueError, match="at least 2 images .* Received: b \\(1\\)"):
        data.load_folder(root)


def test_a_small_class_is_named_in_a_warning_and_still_reaches_val_and_test(tmp_path, isolated_cache):
    root = make(tmp_path / "ds", {"a": 30, "b": 4})
    ds = data.load_folder(root)
    with pytest.warns(errors.SmallClassWarning, match="b: 4 images -> train 2, val 1, test 1"):
        parts = splits.split(ds, seed=0, val=5, test=5)
    assert parts["val"].counts() == {"a": 5, "b": 1} and parts["test"].counts() == {"a": 5, "b": 1}


def test_asking_for_no_val_or_test_split_warns_about_nothing(tmp_path, isolated_cache):
    import warnings

    ds = data.load_folder(make(tmp_path / "ds", {"a": 30, "b": 12}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.SmallClassWarning)
        parts = splits.split(ds, seed=0, train=5, val=0, test=3)  # 04's few-shot pool: no val on purpose
        none = splits.split(ds, seed=0, train=5, val=0, test=0)
    assert sum(parts["val"].counts().values()) == 0 and parts["test"].counts() == {"a": 3, "b": 3}
    assert len(none["val"]) == len(none["test"]) == 0 and none["train"].counts() == {"a": 5, "b": 5}
    with pytest.warns(errors.SmallClassWarning, match=r"asked per class: test 6\): b: 12 images -> train 5, test 4"):
        splits.split(ds, seed=0, train=5, val=0, test=6)


def test_validation_uses_the_pipelines_decoder(tmp_path, isolated_cache):
    from PIL import Image

    root = make(tmp_path / "ds", {"a": 3, "b": 3})
    Image.new("RGB", (12, 12)).save(root / "a" / "scan.jpg", format="TIFF")  # a TIFF named .jpg
    (root / "b" / "cut.png").write_bytes((root / "b" / "img0.jpg").read_bytes()[:40])
    ds = data.load_folder(root)
    assert ds.skip_reasons[str(root / "a" / "scan.jpg")].startswith("a TIFF image named .jpg: TensorFlow reads only")
    assert "damaged" in ds.skip_reasons[str(root / "b" / "cut.png")] or \
        "not a readable image" in ds.skip_reasons[str(root / "b" / "cut.png")]
    x, _ = data.to_numpy(ds, 8)  # whatever passed the check decodes
    assert x.shape == (6, 8, 8, 3)


def test_a_valid_but_huge_image_says_its_size(tmp_path, isolated_cache):
    from PIL import Image

    root = make(tmp_path / "ds", {"a": 2, "b": 2})
    Image.new("L", (14000, 14000)).save(root / "a" / "huge.jpg", quality=10)  # 196 megapixels, 2 MB
    ds = data.load_folder(root)
    reason = ds.skip_reasons[str(root / "a" / "huge.jpg")]
    assert reason.startswith("14000 x 14000 pixels, larger than 100 megapixels; resize it")


def test_sixteen_bit_images_are_shown_as_the_model_sees_them(tmp_path, isolated_cache):
    from PIL import Image

    root = make(tmp_path / "ds", {"a": 2, "b": 2})
    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(root / "a" / "deep.png")  # mid-grey in 16 bits
    ds = data.load_folder(root)
    i = ds.items.index(str(root / "a" / "deep.png"))
    shown = ds.images([i])[0]
    assert 120 <= shown.mean() <= 136  # not saturated to 255
    x, _ = data.to_numpy(ds.subset([i]), 8)
    assert abs(float(x.mean()) - float(shown.mean())) < 2


def test_a_file_that_changes_after_loading_is_named_by_the_error(tmp_path, isolated_cache):
    from PIL import Image

    root = make(tmp_path / "ds", {"a": 2, "b": 2})
    ds = data.load_folder(root)
    Image.new("RGB", (12, 12)).save(root / "a" / "img1.jpg", format="TIFF")
    with pytest.raises(errors.BadImageError, match="img1.jpg: a TIFF image named .jpg"):
        data.to_numpy(ds, 8)
    with pytest.raises(Exception, match="img1.jpg"):  # a learner's own loop over the pipeline
        list(data.pipeline(ds, 8))


def test_a_damaged_file_check_cache_is_rebuilt(tmp_path, isolated_cache):
    root = make(tmp_path / "ds", {"a": 2, "b": 2})
    (root / "a" / "notes.txt").write_text("x")
    data.load_folder(root)
    caches = list((isolated_cache / "validated").glob("*.json"))
    assert len(caches) == 1 and json.loads(caches[0].read_text())["bad"]
    caches[0].write_text('{"version": 2, "bad": {"')  # truncated
    ds = data.load_folder(root)
    assert [p.rsplit("/", 1)[-1] for p in ds.skipped] == ["notes.txt"]
    assert json.loads(caches[0].read_text())["version"] == folders.CHECK_VERSION


def test_the_fast_profile_says_how_many_images_it_uses(tmp_path, isolated_cache, capsys):
    from course_lib import config

    root = make(tmp_path / "ds", {"train/a": 12, "train/b": 10, "test/a": 4, "test/b": 4})
    ds = data.load_folder(root)
    profile = config.Profile("fast", 32, 8, train_per_class=5, val_per_class=2, test_per_class=3,
                             epochs=1, finetune_epochs=1)
    parts = splits.profile_split(ds, types.SimpleNamespace(profile=profile, seed=0))
    out = capsys.readouterr().out
    assert [len(parts[k]) for k in ("train", "val", "test")] == [10, 4, 6]
    assert "Fast profile: 20 of your 30 images are used, at most 5/2/3 per class" in out
    assert "COURSE_PROFILE=full" in out


def test_digit_datasets_point_to_load_digits():
    with pytest.raises(ValueError, match="cl.data.load_digits\\('mnist'\\)"):
        data.load("mnist", allow_override=False)
    assert "mnist" not in data.image_datasets() and "pacs/sketch" in data.image_datasets()


def test_every_listed_dataset_loads_from_the_mirror(mirror_root, isolated_cache):
    for name in data.image_datasets():
        ds = data.load(name, allow_override=False, verbose=False)
        assert ds.num_classes >= 5 and len(ds) > 500 and not ds.skipped, name


def test_known_format_sniffing_matches_the_decoder():
    import tensorflow as tf
    from PIL import Image

    for fmt, expected in [("JPEG", True), ("PNG", True), ("GIF", True), ("BMP", True),
                          ("WEBP", True), ("TIFF", False)]:
        buf = io.BytesIO()
        Image.new("RGB", (4, 4)).save(buf, format=fmt)
        assert bool(folders.known_format(tf.constant(buf.getvalue()))) is expected, fmt
    assert bool(folders.known_format(tf.constant(b"BM"))) is True  # short input does not crash
    assert bool(folders.known_format(tf.constant(b""))) is False


def test_carving_a_test_split_warns_only_about_what_was_asked(tmp_path, isolated_cache):
    root = make(tmp_path / "ds", {"train/a": 9, "train/b": 30, "val/a": 2, "val/b": 2})
    ds = data.load_folder(root)
    with pytest.warns(errors.SmallClassWarning) as record:
        splits.split(ds, seed=0, test=5)
    text = str(record[0].message)
    assert "asked per class: test 5" in text and "a: 9 images -> train 6, test 3" in text
    assert "val" not in text.split("):")[0] and "b:" not in text
    assert record[0].filename == __file__  # points at the caller, not at course_lib
