"""Domain shift measured (course_lib/domain.py): MMD, proxy A-distance, features, evaluation and plots."""

import numpy as np
import pytest

from course_lib import domain

from .conftest import blocky_images, bn_model


# ----------------------------------------------------------------------- distances


def test_mmd_is_zero_for_a_sample_with_itself_symmetric_and_grows_with_shift():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    assert domain.mmd2(x, x) == pytest.approx(0.0, abs=1e-12)
    assert domain.mmd2(x, x[::-1]) == pytest.approx(0.0, abs=1e-12), "order does not matter"
    y = rng.normal(size=(50, 5))
    assert domain.mmd2(x, y, 2.0) == pytest.approx(domain.mmd2(y, x, 2.0))
    shifts = [domain.mmd2(x, y + s, bandwidth=2.0) for s in (0.0, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(shifts, shifts[1:])), shifts
    with pytest.raises(ValueError, match="same feature size"):
        domain.mmd2(x, y[:, :3])
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        domain.mmd2(x, y, bandwidth=0.0)


def test_median_bandwidth_matches_the_definition():
    x = np.array([[0.0], [1.0], [3.0]])  # distances 1, 2, 3
    assert domain.median_bandwidth(x) == pytest.approx(2.0)


def test_proxy_a_distance_separates_same_from_different_distributions():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(80, 10)), rng.normal(size=(80, 10))
    far = rng.normal(size=(80, 10)) + 3.0
    assert domain.proxy_a_distance(a, b) < 0.6
    assert domain.proxy_a_distance(a, far) > 1.8


def test_rank_correlation():
    assert domain.rank_correlation([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert domain.rank_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="same length"):
        domain.rank_correlation([1, 2], [1, 2, 3])


# ----------------------------------------------------------------- features and evaluation


def test_balanced_accuracy_weighs_every_class_the_same():
    y = np.array([0] * 8 + [1] * 2)
    always_zero = np.zeros(10, int)
    assert np.mean(always_zero == y) == pytest.approx(0.8)
    assert domain.balanced_accuracy(y, always_zero) == pytest.approx(0.5)
    assert domain.balanced_accuracy([0, 0, 1], [0, 2, 1]) == pytest.approx(0.75), "a class only predicted is fine"
    with pytest.raises(ValueError, match="same length"):
        domain.balanced_accuracy(y, always_zero[:5])


def test_recovered_fraction():
    assert domain.recovered_fraction(0.2, 0.5, 0.8) == pytest.approx(0.5)
    assert np.isnan(domain.recovered_fraction(0.9, 0.9, 0.8))


def test_features_of_in_memory_images_match_a_direct_call():
    model = bn_model()
    images = blocky_images(n=5, size=16, seed=2)
    out = domain.array_features(model, images, preprocess=None, batch_size=2)
    assert out.shape == (5, 3) and out.dtype == np.float32
    assert np.allclose(out, np.asarray(model(images.astype(np.float32), training=False)), atol=1e-5)


def test_embed_2d_and_plots():
    rng = np.random.default_rng(0)
    points, dom = domain.embed_2d({"a": rng.normal(size=(5, 6)), "b": rng.normal(size=(3, 6))})
    assert points.shape == (8, 2) and dom.tolist() == ["a"] * 5 + ["b"] * 3
    fig = domain.plot_embedding(points, dom)
    assert len(fig.axes[0].collections) == 2
    fig = domain.plot_domain_accuracy({"photo": 0.9, "sketch": 0.3})
    assert [round(p.get_height(), 2) for p in fig.axes[0].patches] == [0.9, 0.3]
    fig = domain.plot_corruption_sweep({"blur": {1: 0.8, 3: 0.5}}, clean=0.9, chance=1 / 7)
    assert list(fig.axes[0].lines[0].get_ydata()) == [0.9, 0.8, 0.5]
    fig = domain.plot_examples({"x": blocky_images(n=2), "y": blocky_images(n=3)}, per_row=3)
    assert len(fig.axes) == 6
    fig = domain.plot_distance_vs_drop({"a": 0.1, "b": 0.2}, {"a": 0.3, "b": 0.5})
    assert len(fig.axes[0].collections) == 2
