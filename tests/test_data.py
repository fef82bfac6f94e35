"""Datasets: user folders (corrupt, grayscale, RGBA files), splits, pipelines, mirror, TFDS."""

import numpy as np
import pytest

from course_lib import data, splits

from .conftest import toy_imageset, write_image


def test_user_folder_skips_bad_files_and_reports_once(image_folder, capsys):
    ds = data.load(str(image_folder), allow_override=False)
    out = capsys.readouterr().out
    assert len(ds) == 14 and ds.class_names == ["cats", "dogs"]
    assert sorted(p.split("/")[-1] for p in ds.skipped) == ["broken.jpg", "notes.txt"]
    skipped_lines = [line for line in out.splitlines() if line.startswith("Skipped")]
    assert len(skipped_lines) == 1 and "Skipped 2 file(s) that cannot be used" in skipped_lines[0]
    assert "broken.jpg: not a readable image" in skipped_lines[0]
    assert "notes.txt: not an image file type (.txt" in skipped_lines[0]


def test_grayscale_and_rgba_become_rgb_and_an_epoch_completes(image_folder):
    ds = data.load_folder(image_folder)
    pipe = data.pipeline(ds, 32, preprocess="mobilenet_v2", batch_size=4)
    seen = 0
    for x, y in pipe:  # a whole epoch: no corrupt file can crash it
        assert x.shape[1:] == (32, 32, 3)
        seen += int(x.shape[0])
    assert seen == len(ds)
    x, _ = data.to_numpy(ds, 16)
    assert x.dtype == np.uint8 and x.shape == (14, 16, 16, 3)


def test_course_dataset_setting_swaps_in_the_learners_folder(image_folder, monkeypatch):
    monkeypatch.setenv("COURSE_DATASET", str(image_folder))
    ds = data.load("flowers")
    assert ds.class_names == ["cats", "dogs"]


def test_split_folder_layout(tmp_path, isolated_cache):
    for split, n in [("train", 5), ("test", 2)]:
        for cls in ("a", "b"):
            for i in range(n):
                write_image(tmp_path / "ds" / split / cls / f"{i}.png", seed=i)
    ds = data.load_folder(tmp_path / "ds")
    parts = splits.split(ds, seed=0, val_fraction=0.2)
    assert len(parts["test"]) == 4 and len(parts["val"]) == 2 and len(parts["train"]) == 8


def test_split_is_stratified_seeded_and_disjoint(image_folder):
    ds = data.load_folder(image_folder)
    a = splits.split(ds, seed=1, train=3, val=2, test=1)
    b = splits.split(ds, seed=1, train=3, val=2, test=1)
    c = splits.split(ds, seed=2, train=3, val=2, test=1)
    assert a["train"].items == b["train"].items
    assert a["train"].items != c["train"].items
    assert a["train"].counts() == {"cats": 3, "dogs": 3}
    assert a["val"].counts() == {"cats": 2, "dogs": 2}
    sets = [set(a[k].items) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])


def test_per_class_indices_is_the_seeded_per_class_sampler():
    labels = np.repeat([2, 0, 1], [10, 3, 7])  # class 0 has only 3 items
    small = splits.per_class_indices(labels, 2, seed=1)
    assert np.bincount(labels[small]).tolist() == [2, 2, 2] and np.all(np.diff(small) > 0), "exact counts, sorted"
    assert np.array_equal(small, splits.per_class_indices(labels, 2, seed=1)), "seeded: repeatable"
    assert not np.array_equal(small, splits.per_class_indices(labels, 2, seed=2))
    rng = np.random.default_rng(1)  # the RNG use the notebooks' printed numbers rest on (and 04's exercise)
    by_hand = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:2] for c in (0, 1, 2)]))
    assert np.array_equal(small, by_hand)
    with pytest.raises(ValueError, match=r"n_per_class=5. Received: \{class: items left\} \{0: 3\}"):
        splits.per_class_indices(labels, 5, seed=1)  # a class smaller than n: an error by default ...
    large = splits.per_class_indices(labels, 5, seed=1, allow_fewer=True)  # ... or all of it
    assert np.bincount(labels[large]).tolist() == [3, 5, 5] and set(small) <= set(large), "nested as n grows"
    taken = small[labels[small] != 0]
    rest = splits.per_class_indices(labels, 2, seed=1, exclude=taken)
    assert np.bincount(labels[rest]).tolist() == [2, 2, 2] and not set(rest) & set(taken), "never an excluded item"
    with pytest.raises(ValueError, match=r"\{0: 0\}"):
        splits.per_class_indices(labels, 1, seed=1, exclude=large)  # class 0 has nothing left
    assert len(splits.per_class_indices(labels, 0)) == 0 and len(splits.per_class_indices([], 3)) == 0
    for bad in (-1, 2.5, None):
        with pytest.raises(ValueError, match="integer n_per_class >= 0"):
            splits.per_class_indices(labels, bad)
    with pytest.raises(ValueError, match=r"1-D labels .* shape \(2, 10\)"):
        splits.per_class_indices(labels.reshape(2, 10), 1)


def test_cache_comes_before_random_augmentation(image_folder):
    """Augmentation after cache: a new random view every epoch; the cached images stay fixed."""
    import keras

    ds = data.load_folder(image_folder)
    aug = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2)])
    pipe = data.pipeline(ds, 24, batch_size=64, augment=aug)
    e1, e2 = [next(iter(pipe))[0].numpy() for _ in range(2)]
    assert not np.allclose(e1, e2), "augmentation must differ between epochs"
    plain = data.pipeline(ds, 24, batch_size=64)
    p1, p2 = [next(iter(plain))[0].numpy() for _ in range(2)]
    assert np.array_equal(p1, p2)


def test_missing_folder_and_single_class(tmp_path, isolated_cache):
    with pytest.raises(FileNotFoundError, match="Image folder not found"):
        data.load_folder(tmp_path / "nope")
    write_image(tmp_path / "one" / "only" / "x.png")
    with pytest.raises(ValueError, match="at least 2 class folders"):
        data.load_folder(tmp_path / "one")


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match=r"Unknown dataset. Received: name='cifar'"):
        data.load("cifar", allow_override=False)


def test_fingerprint_changes_with_content(image_folder):
    ds = data.load_folder(image_folder)
    f1 = ds.fingerprint()
    assert ds.subset(range(len(ds) - 1)).fingerprint() != f1
    write_image(image_folder / "cats" / "cats_0.jpg", seed=123)
    assert data.load_folder(image_folder).fingerprint() != f1


def test_mirror_flowers_and_pacs(mirror_root, monkeypatch, isolated_cache):
    monkeypatch.setenv("COURSE_MIRROR", str(mirror_root))
    monkeypatch.delenv("COURSE_DATASET", raising=False)
    flowers = data.load("flowers")
    assert flowers.class_names == ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    assert len(flowers) > 4000
    sketch = data.load("pacs/sketch", allow_override=False)
    assert sketch.num_classes == 7 and len(sketch) > 3000
    with pytest.raises(ValueError, match="Unknown pacs domain"):
        data.load("pacs/comics", allow_override=False)
    x, y = data.load_digits("mnist")
    assert x.shape == (10000, 28, 28) and set(np.unique(y)) == set(range(10))


def test_tfds_path_with_mock_data(monkeypatch, isolated_cache):
    import tensorflow_datasets as tfds

    from course_lib import errors

    monkeypatch.delenv("COURSE_MIRROR", raising=False)
    monkeypatch.delenv("COURSE_DATASET", raising=False)
    monkeypatch.setattr(errors, "network_available", lambda *a, **k: True)  # mock_data stands in for it
    with tfds.testing.mock_data(num_examples=12):
        ds = data.load("flowers")
    assert len(ds) == 12 and ds.source == "tfds:tf_flowers"
    assert set(ds.labels) <= set(range(5))
    x, _ = data.to_numpy(ds, 16)
    assert x.shape == (12, 16, 16, 3)


def test_an_empty_split_is_a_clear_error_everywhere(image_folder):
    from course_lib import errors, features

    ds = data.load_folder(image_folder)
    empty = splits.split(ds, seed=0, train=0, val=2, test=2)["train"]
    assert len(empty) == 0 and empty.part == "train"
    for call in (lambda: data.pipeline(empty, 16), lambda: data.to_numpy(empty, 16),
                 lambda: features.extract(None, empty, image_size=16)):
        with pytest.raises(errors.EmptySplitError, match="The train split of 'my_images' has no images"):
            call()
    with pytest.raises(errors.EmptySplitError, match="training features are empty"):
        features.train_head((np.zeros((0, 4)), np.zeros((0,), int)), num_classes=2)


_labelled = toy_imageset


def test_stratified_cap_takes_classes_in_turn_and_is_seeded():
    ds = _labelled([30, 30, 30, 2])
    capped = splits.stratified_cap(ds, 20, seed=3)
    counts = list(capped.counts().values())
    assert len(capped) == 20 and counts[3] == 2 and max(counts) - min(counts[:3]) <= 1
    assert capped.items == splits.stratified_cap(ds, 20, seed=3).items
    assert splits.stratified_cap(ds, None) is ds and splits.stratified_cap(ds, 500) is ds


def test_stratified_cap_with_more_classes_than_the_cap_keeps_the_total():
    capped = splits.stratified_cap(_labelled([3] * 50), 20, seed=0)
    assert len(capped) == 20 and max(capped.counts().values()) == 1


def test_profile_split_caps_each_split_in_total(capsys):
    import types

    from course_lib import config

    ds = _labelled([10] * 12)  # 12 classes x (4 train + 2 val + 2 test) asked; totals cap them
    profile = config.Profile("fast", 32, 8, train_per_class=4, val_per_class=2, test_per_class=2, epochs=1,
                             finetune_epochs=1, train_total=20, val_total=12, test_total=30)
    parts = splits.profile_split(ds, types.SimpleNamespace(profile=profile, seed=0))
    out = capsys.readouterr().out
    assert [len(parts[k]) for k in ("train", "val", "test")] == [20, 12, 24]
    assert [p.part for p in parts.values()] == ["train", "val", "test"]
    assert "at most 4/2/2 per class and 20/12/30 in total" in out
    assert "the total cap, stratified, applies to train/val: train 20, val 12" in out


def test_unused_holds_only_images_no_split_took_stratified_and_seeded():
    ds = _labelled([10] * 4)
    parts = splits.split(ds, 0, train=4, val=2, test=2)
    rest = splits.unused(ds, parts)
    taken = {i for part in parts.values() for i in part.items}
    assert len(rest) == 8 and not taken & set(rest.items) and set(rest.items) | taken == set(ds.items)
    assert rest.part == "unused" and list(rest.counts().values()) == [2, 2, 2, 2]
    capped = splits.unused(ds, parts, 4, seed=1)
    assert len(capped) == 4 and max(capped.counts().values()) == 1
    assert capped.items == splits.unused(ds, parts, 4, seed=1).items
    assert len(splits.unused(ds, {"all": ds})) == 0


def test_the_fast_profile_bounds_the_total_whatever_the_number_of_classes():
    from course_lib import config

    fast = config.PROFILES["fast"]
    assert fast.train_total and fast.val_total and fast.test_total
    assert fast.train_total >= 5 * fast.train_per_class  # the course's five flower classes fit uncapped
    assert config.PROFILES["full"].train_total is None
