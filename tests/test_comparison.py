"""cl.comparison: the fair feature-extraction vs fine-tuning grid of 03, on tiny generated data."""

import numpy as np
import pytest

from course_lib import backbones, comparison, data, features, finetune, stats

from .conftest import toy_imageset, write_image

NAME = "mobilenet_v2"


_set = toy_imageset


def test_fixed_split_keeps_every_class_in_every_part():
    ds = _set([80, 8, 3, 200])
    parts = comparison.fixed_split(ds, 0, val=10, test=20, train_pool=30)
    sets = {k: set(v.tolist()) for k, v in parts.items()}
    assert not (sets["val"] & sets["test"]) and not (sets["val"] & sets["train_pool"]) \
        and not (sets["test"] & sets["train_pool"])
    for c, n in enumerate([80, 8, 3, 200]):
        got = {k: int(np.sum(ds.labels[v] == c)) for k, v in parts.items()}
        assert got["val"] == max(1, min(10, n // 4)) and got["test"] == max(1, min(20, n // 4))
        assert 1 <= got["train_pool"] <= 30
    again = comparison.fixed_split(ds, 0, val=10, test=20, train_pool=30)  # seeded
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    with pytest.raises(ValueError, match=r"Class 'c1' has 2 image\(s\); each class needs at least 3"):
        comparison.fixed_split(_set([10, 2]), 0, val=2, test=2, train_pool=5)


def test_fixed_split_without_a_test_size_tests_on_every_image_left():
    ds = _set([80, 8, 3, 200])
    parts = comparison.fixed_split(ds, 0, val=10, test=None, train_pool=30)
    assert sum(len(v) for v in parts.values()) == len(ds), "every image is in exactly one part"
    assert len(np.unique(np.concatenate(list(parts.values())))) == len(ds)
    for c, n in enumerate([80, 8, 3, 200]):
        got = {k: int(np.sum(ds.labels[v] == c)) for k, v in parts.items()}
        assert got["val"] == max(1, min(10, n // 4))
        assert got["test"] >= max(1, n // 4), "a small class keeps at least a quarter for test"
        assert 1 <= got["train_pool"] <= 30
    assert int(np.sum(ds.labels[parts["test"]] == 3)) == 200 - 10 - 30  # a large class tests on the rest
    pool10 = comparison.fixed_split(ds, 0, val=10, test=None, train_pool=10)
    assert np.array_equal(pool10["val"], parts["val"]), "the validation split does not depend on the pool"


def test_summary_intervals_and_the_far_minus_near_difference_are_paired_by_seed():
    rows = [{"target": t, "n": 5, "seed": s, "fe": 0.5, "ft": 0.5 + g, "gain": g}
            for t, gains in (("far", [0.05, 0.04, 0.06]), ("near", [0.01, -0.01, 0.0]))
            for s, g in zip((42, 43, 44), gains)]
    summary = comparison.summarize(rows[::-1])  # the order of the rows does not matter
    far = summary["far"][5]
    assert far["gain_mean"] == pytest.approx(0.05) and far["gain_ci_low"] > 0 and far["gain_ci_high"] < 0.1
    near = summary["near"][5]
    assert near["gain_ci_low"] < 0 < near["gain_ci_high"], "a gain of 0 +- 1 point over 3 seeds contains zero"
    apart = comparison.difference(summary, 5)
    assert apart["mean"] == pytest.approx(0.05) and apart["n"] == 3
    by_hand = stats.mean_interval([0.05 - 0.01, 0.04 + 0.01, 0.06 - 0.0])  # far minus near, seed by seed
    assert (apart["low"], apart["high"]) == pytest.approx((by_hand["low"], by_hand["high"]))


def test_train_subsets_are_nested_seeded_and_drawn_from_the_pool():
    ds = _set([50, 50, 12])
    pool = comparison.fixed_split(ds, 0, val=5, test=5, train_pool=40)["train_pool"]
    a = comparison.train_subsets(ds.labels, pool, 1, [3, 10])
    b = comparison.train_subsets(ds.labels, pool, 2, [3, 10])
    assert set(a[3]) <= set(a[10]) <= set(pool.tolist())
    assert [int(np.sum(ds.labels[a[10]] == c)) for c in range(3)] == [10, 10, 6]  # class 2 has 6 left
    assert not np.array_equal(a[10], b[10])
    assert np.array_equal(a[10], comparison.train_subsets(ds.labels, pool, 1, [3, 10])[10])


def test_a_cache_holding_nan_is_rebuilt(tmp_path):
    key = {"k": 1}
    path = tmp_path / "x.npz"
    features.write_cache(path, key, np.array([[1.0, np.nan]], "float32"), np.array([0]))
    assert features.read_cache(path, key, 1) is None
    features.write_cache(path, key, np.array([[1.0, 2.0]], "float32"), np.array([0]))
    assert features.read_cache(path, key, 1).tolist() == [[1.0, 2.0]]
    assert features.read_cache(path, {"k": 2}, 1) is None


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    """Two 3-class targets of 14 generated images per class, a random-weight MobileNetV2 cut at block_16."""
    import os

    root = tmp_path_factory.mktemp("grid")
    os.environ["COURSE_CACHE"] = str(root / "cache")
    targets = {}
    for t, shift in (("near", 0), ("far", 50)):
        for c in range(3):
            for i in range(14):
                write_image(root / t / f"c{c}" / f"{i}.png", size=(32, 32), seed=shift + 20 * c + i)
        targets[t] = data.load_folder(root / t)
    net = backbones.load(NAME, 32, weights=None)
    bottom, top = finetune.split_at_block(net, NAME, "block_16")
    cached = {}
    for t, ds in targets.items():
        split = comparison.fixed_split(ds, 0, val=3, test=3, train_pool=8)
        cached[t] = comparison.prepare(t, ds, split=split, bottom=bottom, top=top, image_size=32,
                                       preprocess=NAME, copies=2)
    yield cached, top, bottom
    del os.environ["COURSE_CACHE"]


@pytest.mark.slow
def test_prepare_caches_plain_and_augmented_activations(tiny_grid, monkeypatch):
    cached, top, bottom = tiny_grid
    t = cached["far"]
    assert t.plain.shape[0] == len(t.split["val"]) + len(t.split["test"]) + len(t.split["train_pool"])
    assert t.aug_plain.shape[:2] == (2, len(t.split["train_pool"]))
    assert not np.array_equal(t.aug_plain[0], t.aug_plain[1])  # two different random views
    idx = t.split["train_pool"][:4]
    assert t.arrays(idx, level="acts", augmented=True).shape[:2] == (2, 4)
    assert np.allclose(t.arrays(idx, level="feats"), top.predict(t.arrays(idx, level="acts"), verbose=0), atol=1e-5)
    monkeypatch.setattr(type(bottom), "predict", lambda *a, **k: pytest.fail("the cache was not used"))
    again = comparison.augmented_activations(bottom, t.ds.subset(t.split["train_pool"]), image_size=32,
                                             preprocess=NAME, copies=2)
    assert np.array_equal(again, t.aug_plain)


@pytest.mark.slow
def test_grid_rows_are_fair_and_leave_the_top_untouched(tiny_grid):
    cached, top, _ = tiny_grid
    start = [w.copy() for w in top.get_weights()]
    budget = comparison.Budget(head_epochs=1, fine_tune_epochs=1, patience=2, warmup_epochs=1, batch_size=4)
    rows = comparison.grid(cached, top, backbone_name=NAME, sizes=(2, 5), seeds=(0, 1), budget=budget)
    assert len(rows) == 2 * 2 * 2
    assert all(np.array_equal(a, b) for a, b in zip(start, top.get_weights())), "a run changed the shared top"
    assert top.trainable_weights == []
    for r in rows:
        for arm in ("fe", "ft"):
            assert r[arm] == r[f"{arm}_{'aug' if r[f'{arm}_augmented'] else 'plain'}_test"]
            other = "plain" if r[f"{arm}_augmented"] else "aug"
            assert r[f"{arm}_val"] >= r[f"{arm}_{other}_val"], "each arm keeps the variant that validates better"
        assert r["gain"] == pytest.approx(r["ft"] - r["fe"])
        assert r["test_images"] == len(cached[r["target"]].split["test"])
    summary = comparison.summarize(rows)
    s = summary["far"][5]
    gains = [r["gain"] for r in rows if r["target"] == "far" and r["n"] == 5]
    assert s["seeds"] == 2 and s["gain_mean"] == pytest.approx(np.mean(gains))
    assert s["gain_std"] == pytest.approx(np.std(gains, ddof=1))
    fig = comparison.plot_gains(summary)
    assert len(fig.axes[0].lines) >= 2


@pytest.mark.slow
def test_a_plain_grid_needs_no_augmented_copies_and_refuses_augmentation_without_them(tiny_grid):
    cached, top, bottom = tiny_grid
    t = cached["near"]
    plain = comparison.prepare("near", t.ds, split=t.split, bottom=bottom, top=top, image_size=32,
                               preprocess=NAME, copies=0)
    assert plain.aug_plain.shape[:2] == (0, len(t.split["train_pool"])) and np.array_equal(plain.plain, t.plain)
    budget = comparison.Budget(head_epochs=1, fine_tune_epochs=1, patience=2, warmup_epochs=1, batch_size=4)
    idx = comparison.train_subsets(t.labels, t.split["train_pool"], 0, [3])[3]
    row = comparison.run_cell(plain, idx, n=3, top=top, backbone_name=NAME, budget=budget, seed=0, variants=(False,))
    assert not row["fe_augmented"] and not row["ft_augmented"] and "ft_aug_test" not in row
    assert row["gain"] == pytest.approx(row["ft_plain_test"] - row["fe_plain_test"])
    with pytest.raises(ValueError, match="copies=0"):
        comparison.run_cell(plain, idx, n=3, top=top, backbone_name=NAME, budget=budget, seed=0, variants=(False, True))


@pytest.mark.slow
def test_reused_compiled_models_give_exactly_a_fresh_run(tiny_grid):
    cached, top, _ = tiny_grid
    t = cached["near"]
    idx = comparison.train_subsets(t.labels, t.split["train_pool"], 3, [4])[4]
    budget = comparison.Budget(head_epochs=2, fine_tune_epochs=2, patience=3, warmup_epochs=1, batch_size=4)
    t.trainers.clear()
    fresh = (comparison.feature_extraction(t, idx, budget=budget, seed=3, augmented=True),
             comparison.fine_tuning(t, idx, top=top, backbone_name=NAME, budget=budget, seed=3, augmented=True))
    assert t.trainers, "the compiled models are kept for the next run"
    comparison.fine_tuning(t, idx, top=top, backbone_name=NAME, budget=budget, seed=4,
                           augmented=False)  # another run in between moves every state
    reused = (comparison.feature_extraction(t, idx, budget=budget, seed=3, augmented=True),
              comparison.fine_tuning(t, idx, top=top, backbone_name=NAME, budget=budget, seed=3, augmented=True))
    assert reused == fresh


def test_budget_gives_feature_extraction_both_stages_epochs():
    assert comparison.Budget(head_epochs=3, fine_tune_epochs=5).total_epochs == 8


def test_recipe_data_is_one_grid_cell_on_course_data_and_the_learners_folder_otherwise(image_folder, monkeypatch,
                                                                                        capsys):
    from types import SimpleNamespace

    target = _set([12, 12])
    fixed = comparison.fixed_split(target, 0, val=2, test=None, train_pool=6)
    course = SimpleNamespace(dataset_override=None, profile=SimpleNamespace(name="fast"),
                             per_class=lambda fast, full: fast)
    ds, splits = comparison.recipe_data(target, fixed, cfg=course, n=3, seed=5, val=2, test=2, default="unused")
    cell = comparison.train_subsets(target.labels, fixed["train_pool"], 5, [3])[3]
    assert ds is target and splits["train"].items == target.subset(cell).items, "the grid's cell for that seed"
    assert splits["test"].items == target.subset(fixed["test"]).items

    monkeypatch.setenv("COURSE_DATASET", str(image_folder))
    mine = SimpleNamespace(dataset_override=image_folder, profile=SimpleNamespace(name="fast"),
                           per_class=lambda fast, full: fast)
    ds, splits = comparison.recipe_data(target, fixed, cfg=mine, n=2, seed=5, val=1, test=1, default="pacs/sketch")
    assert ds.class_names == ["cats", "dogs"] and {len(p) for p in splits.values()} == {2, 4}
    out = capsys.readouterr().out
    assert "Training images per class used / available: cats 2/" in out and "COURSE_PROFILE=full" in out
