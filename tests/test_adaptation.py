"""Adaptation methods: CORAL, AdaBN and few-shot head retraining."""

import numpy as np
import pytest

from course_lib import adaptation, domain

from .conftest import blocky_images, bn_model


# ------------------------------------------------------------------------------- CORAL


def test_coral_of_a_sample_with_itself_is_the_identity():
    x = np.random.default_rng(0).normal(size=(30, 12))
    assert np.allclose(adaptation.coral(x, x), x, atol=1e-5)
    assert np.allclose(adaptation.coral(x, x, match_mean=False), x, atol=1e-5)


def test_coral_between_identically_distributed_features_is_close_to_the_identity():
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(8, 8))
    a, b = rng.normal(size=(5000, 8)) @ mix, rng.normal(size=(5000, 8)) @ mix
    centred = a - a.mean(0)

    def moved(target):  # how far CORAL moves the (centred) source features, relative to their size
        out = adaptation.coral(a, target, eps=1e-3, match_mean=False) - a.mean(0)
        return np.linalg.norm(out - centred) / np.linalg.norm(centred)

    assert moved(b) < 0.1
    skewed = rng.normal(size=(5000, 8)) @ (mix * np.linspace(0.2, 3, 8))
    assert moved(skewed) > 0.5


def test_coral_gives_source_features_the_target_covariance_and_mean():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(4000, 6))
    tgt = rng.normal(size=(4000, 6)) @ rng.normal(size=(6, 6)) + 5.0
    out = adaptation.coral(src, tgt, eps=1e-6)
    assert np.allclose(np.cov(out, rowvar=False), np.cov(tgt, rowvar=False), atol=1e-2)
    assert np.allclose(out.mean(0), tgt.mean(0), atol=1e-4)


def test_low_rank_coral_equals_the_dense_formula():
    rng = np.random.default_rng(3)
    src, tgt = rng.normal(size=(10, 40)), 2.0 * rng.normal(size=(7, 40)) + 1.0

    def dense(cov, power):
        vals, vecs = np.linalg.eigh(cov + 0.5 * np.eye(40))
        return (vecs * vals ** power) @ vecs.T

    linear_map = dense(np.cov(src, rowvar=False), -0.5) @ dense(np.cov(tgt, rowvar=False), 0.5)
    expected = (src - src.mean(0)) @ linear_map + tgt.mean(0)
    assert np.allclose(adaptation.coral(src, tgt, eps=0.5), expected, atol=1e-5)
    with pytest.raises(ValueError, match="eps must be > 0"):
        adaptation.coral(src, tgt, eps=0.0)


# ------------------------------------------------------------------------------- AdaBN


def _weights_by_path(model):
    return {w.path: np.array(w) for w in model.weights}


def test_adabn_changes_only_batchnorm_moving_statistics():
    model = bn_model()
    before = _weights_by_path(model)
    images = blocky_images(n=10, size=16, seed=5)
    adapted = adaptation.adabn(model, images, preprocess=None, batch_size=4)
    after = _weights_by_path(adapted)
    assert after.keys() == before.keys()
    changed = {p for p in before if not np.allclose(before[p], after[p])}
    moving = {p for p in before if p.split("/")[-1] in ("moving_mean", "moving_variance")}
    assert changed == moving, f"changed: {sorted(changed)}"
    assert all(np.array_equal(v, np.array(w)) for v, w in zip(before.values(), model.weights)), \
        "the source model is left untouched"
    assert not adapted.trainable and all(not l.trainable for l in adaptation.bn_layers(adapted))
    assert [l.momentum for l in adaptation.bn_layers(adapted)] == [l.momentum for l in adaptation.bn_layers(model)]


def test_adabn_statistics_are_the_target_statistics_over_all_batches():
    import keras

    model = bn_model()
    images = blocky_images(n=11, size=16, seed=6)
    adapted = adaptation.adabn(model, images, preprocess=None, batch_size=4)  # batches of 4, 4 and 3
    conv = keras.Model(model.input, model.get_layer("conv").output)
    act = np.asarray(conv(images.astype(np.float32)))
    bn = adapted.get_layer("bn1")
    assert np.allclose(np.array(bn.moving_mean), act.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-4), \
        "the moving mean is the mean over all target images (no trace of the old statistics)"
    per_batch = [(len(act[i:i + 4]), act[i:i + 4].var(axis=(0, 1, 2))) for i in range(0, 11, 4)]
    expected = sum(n * v for n, v in per_batch) / 11
    assert np.allclose(np.array(bn.moving_variance), expected, rtol=1e-4, atol=1e-3)


def test_adabn_on_mobilenet_v2_touches_only_bn_statistics():
    from course_lib import backbones

    model = backbones.load("mobilenet_v2", 96, weights=None)
    before = _weights_by_path(model)
    adapted = adaptation.adabn(model, blocky_images(n=4, size=96), batch_size=4)
    after = _weights_by_path(adapted)
    changed = {p.split("/")[-1] for p in before if not np.allclose(before[p], after[p])}
    assert changed == {"moving_mean", "moving_variance"}
    assert len(adaptation.bn_layers(adapted)) == 52


# ---------------------------------------------------------------------------- few-shot head


def test_part_weights_give_every_part_the_same_total_weight():
    w = adaptation.part_weights([np.zeros(90), np.zeros(10)])
    assert w.shape == (100,) and w[:90].sum() == pytest.approx(w[90:].sum())
    assert w.sum() == pytest.approx(100.0), "the mean weight stays 1 (same learning rate scale)"


def test_weighted_head_learns_a_tiny_shifted_part_that_an_unweighted_head_misses():
    """Six shifted points against 120 source points: weighted by part, the head classifies new shifted
    points well above the plain (unweighted) head trained on the same points, and keeps the source."""
    eye, rng = np.eye(8), np.random.default_rng(0)
    big_y, small_y, test_y = np.repeat([0, 1, 2], 40), np.repeat([0, 1, 2], 2), np.repeat([0, 1, 2], 30)
    # source: class k on feature k and a weaker cue on feature 3 + (k+1) % 3; the shifted part: class k on
    # feature 3 + k, where the source's cue points at another class
    big_x = 4.0 * eye[big_y] + 2.0 * eye[3 + (big_y + 1) % 3] + rng.normal(size=(120, 8))
    small_x, test_x = (4.0 * eye[3 + y] + rng.normal(size=(len(y), 8)) for y in (small_y, test_y))
    kwargs = dict(epochs=60, learning_rate=1e-2, seed=0)
    head = adaptation.train_weighted_head([(big_x, big_y), (small_x, small_y)], 3, **kwargs)
    plain = adaptation.train_weighted_head([(np.concatenate([big_x, small_x]), np.concatenate([big_y, small_y]))],
                                           3, **kwargs)  # one part: every point weighs 1
    weighted, unweighted = domain.head_balanced_accuracy(head, test_x, test_y), domain.head_balanced_accuracy(plain, test_x, test_y)
    # measured: 0.86 and 0.29 (data seeds 0-4: 0.66-0.86 and 0.07-0.29)
    assert weighted >= 0.6 and weighted - unweighted >= 0.3, (weighted, unweighted)
    assert domain.head_balanced_accuracy(head, big_x, big_y) >= 0.9
