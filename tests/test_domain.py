"""Domain shift helpers: corruptions, styles, MMD, proxy A-distance, CORAL, AdaBN, few-shot."""

import numpy as np
import pytest

from course_lib import domain


def _images(n=4, size=32, seed=0, block=8):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(40, 215, (n, size // block, size // block, 3))
    return blocks.repeat(block, 1).repeat(block, 2).astype(np.uint8)


# ----------------------------------------------------------------------------- corruptions


@pytest.mark.parametrize("kind", domain.CORRUPTIONS)
def test_corruptions_keep_shape_and_dtype_and_grow_with_severity(kind):
    x = _images(size=112, block=4)
    dists = []
    for severity in range(domain.MAX_SEVERITY + 1):
        y = domain.corrupt(x, kind, severity, seed=1)
        assert y.dtype == np.uint8 and y.shape == x.shape
        dists.append(np.abs(y.astype(float) - x).mean())
    assert dists[0] == 0.0, "severity 0 is the clean image"
    assert dists[1] > 0 and dists[-1] > dists[1], f"{kind}: distortion must grow, got {dists}"


def test_corruption_inputs_are_checked():
    x = _images()
    with pytest.raises(ValueError, match="Allowed: gaussian_noise"):
        domain.corrupt(x, "fog", 1)
    with pytest.raises(ValueError, match="severity=6"):
        domain.corrupt(x, "blur", 6)
    with pytest.raises(ValueError, match="dtype=float64"):
        domain.corrupt(x.astype(float), "blur", 1)


def test_noise_is_seeded_and_contrast_keeps_the_mean():
    x = _images()
    a, b, c = (domain.corrupt(x, "gaussian_noise", 3, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    low = domain.corrupt(x, "contrast", 5)
    assert np.allclose(low.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=1.0)
    assert np.all(low.std(axis=(1, 2, 3)) < 0.1 * x.std(axis=(1, 2, 3)))


def test_colour_shift_rotates_hue_but_keeps_grey_and_brightness():
    assert np.allclose(domain.hue_rotation_matrix(0.0), np.eye(3))
    assert np.allclose(domain.hue_rotation_matrix(1.0), np.eye(3))
    grey = np.full((1, 8, 8, 3), 128, np.uint8)
    assert np.array_equal(domain.corrupt(grey, "colour_shift", 5), grey)
    luma = np.array([0.299, 0.587, 0.114])
    assert np.allclose(luma @ domain.hue_rotation_matrix(0.3), luma), "brightness (luma) is kept"
    reddish = np.zeros((1, 8, 8, 3), np.uint8) + np.array([180, 110, 100], np.uint8)
    shifted = domain.corrupt(reddish, "colour_shift", 5).astype(float)
    assert shifted[0, 0, 0].argmax() != 0, "half a turn moves red away from red"


# ---------------------------------------------------------------------------------- styles


def test_styles_look_like_their_domains():
    x = _images(size=64)
    sketch = domain.stylize(x, "sketch")
    assert np.array_equal(sketch[..., 0], sketch[..., 1]) and np.array_equal(sketch[..., 1], sketch[..., 2])
    assert set(np.unique(sketch)) <= {0, 255} and (sketch == 255).mean() > 0.5, "dark lines on white"
    cartoon = domain.stylize(x, "cartoon")
    assert len(np.unique(cartoon)) <= 6, "flat colours: 5 levels per channel plus the outline grey"
    painting = domain.stylize(x, "art_painting", seed=3)
    assert painting.shape == x.shape and not np.array_equal(painting, x)
    assert np.array_equal(painting, domain.stylize(x, "art_painting", seed=3)), "seeded"
    many = np.concatenate([x] * 70)  # 280 images: processed in two chunks
    assert np.array_equal(domain.stylize(many, "sketch")[-4:], sketch)
    with pytest.raises(ValueError, match="Allowed: sketch, cartoon, art_painting"):
        domain.stylize(x, "photo")


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


# ------------------------------------------------------------------------------- CORAL


def test_coral_of_a_sample_with_itself_is_the_identity():
    x = np.random.default_rng(0).normal(size=(30, 12))
    assert np.allclose(domain.coral_matrix(x, x), np.eye(12), atol=1e-8)
    assert np.allclose(domain.coral(x, x), x, atol=1e-5)


def test_coral_between_identically_distributed_features_is_close_to_the_identity():
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(8, 8))
    a, b = rng.normal(size=(5000, 8)) @ mix, rng.normal(size=(5000, 8)) @ mix
    m = domain.coral_matrix(a, b, eps=1e-3)
    assert np.linalg.norm(m - np.eye(8)) / np.sqrt(8) < 0.1
    skewed = rng.normal(size=(5000, 8)) @ (mix * np.linspace(0.2, 3, 8))
    assert np.linalg.norm(domain.coral_matrix(a, skewed, eps=1e-3) - np.eye(8)) / np.sqrt(8) > 0.5


def test_coral_gives_source_features_the_target_covariance_and_mean():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(4000, 6))
    tgt = rng.normal(size=(4000, 6)) @ rng.normal(size=(6, 6)) + 5.0
    out = domain.coral(src, tgt, eps=1e-6)
    assert np.allclose(np.cov(out, rowvar=False), np.cov(tgt, rowvar=False), atol=1e-2)
    assert np.allclose(out.mean(0), tgt.mean(0), atol=1e-4)


def test_low_rank_coral_equals_the_dense_formula():
    rng = np.random.default_rng(3)
    src, tgt = rng.normal(size=(10, 40)), 2.0 * rng.normal(size=(7, 40)) + 1.0

    def dense(cov, power):
        vals, vecs = np.linalg.eigh(cov + 0.5 * np.eye(40))
        return (vecs * vals ** power) @ vecs.T

    expected = dense(np.cov(src, rowvar=False), -0.5) @ dense(np.cov(tgt, rowvar=False), 0.5)
    assert np.allclose(domain.coral_matrix(src, tgt, eps=0.5), expected, atol=1e-8)
    with pytest.raises(ValueError, match="eps must be > 0"):
        domain.coral(src, tgt, eps=0.0)


# ------------------------------------------------------------------------------- AdaBN


def _bn_model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(5, 3, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3, name="dense")(x))
    model.trainable = False
    return model


def _weights_by_path(model):
    return {w.path: np.array(w) for w in model.weights}


def test_adabn_changes_only_batchnorm_moving_statistics():
    model = _bn_model()
    before = _weights_by_path(model)
    images = _images(n=10, size=16, seed=5)
    adapted = domain.adabn(model, images, preprocess=None, batch_size=4)
    after = _weights_by_path(adapted)
    assert after.keys() == before.keys()
    changed = {p for p in before if not np.allclose(before[p], after[p])}
    moving = {p for p in before if p.split("/")[-1] in ("moving_mean", "moving_variance")}
    assert changed == moving, f"changed: {sorted(changed)}"
    assert all(np.array_equal(v, np.array(w)) for v, w in zip(before.values(), model.weights)), \
        "the source model is left untouched"
    assert not adapted.trainable and all(not l.trainable for l in domain.bn_layers(adapted))
    assert [l.momentum for l in domain.bn_layers(adapted)] == [l.momentum for l in domain.bn_layers(model)]


def test_adabn_statistics_are_the_target_statistics_over_all_batches():
    import keras

    model = _bn_model()
    images = _images(n=11, size=16, seed=6)
    adapted = domain.adabn(model, images, preprocess=None, batch_size=4)  # batches of 4, 4 and 3
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
    adapted = domain.adabn(model, _images(n=4, size=96), batch_size=4)
    after = _weights_by_path(adapted)
    changed = {p.split("/")[-1] for p in before if not np.allclose(before[p], after[p])}
    assert changed == {"moving_mean", "moving_variance"}
    assert len(domain.bn_layers(adapted)) == 52


# ---------------------------------------------------------------------- few-shot, metrics


def test_few_shot_indices_are_per_class_nested_and_seeded():
    labels = np.repeat([0, 1, 2], [12, 10, 15])
    one, five = domain.few_shot_indices(labels, 1, seed=4), domain.few_shot_indices(labels, 5, seed=4)
    assert np.bincount(labels[five]).tolist() == [5, 5, 5]
    assert set(one) <= set(five) and len(set(five)) == 15
    assert not np.array_equal(five, domain.few_shot_indices(labels, 5, seed=5))
    with pytest.raises(ValueError, match="k=11"):
        domain.few_shot_indices(labels, 11)
    with pytest.raises(ValueError, match="positive integer"):
        domain.few_shot_indices(labels, 0)


def test_balanced_accuracy_weighs_every_class_the_same():
    y = np.array([0] * 8 + [1] * 2)
    always_zero = np.zeros(10, int)
    assert np.mean(always_zero == y) == pytest.approx(0.8)
    assert domain.balanced_accuracy(y, always_zero) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same length"):
        domain.balanced_accuracy(y, always_zero[:5])


def test_part_weights_give_every_part_the_same_total_weight():
    w = domain.part_weights([np.zeros(90), np.zeros(10)])
    assert w.shape == (100,) and w[:90].sum() == pytest.approx(w[90:].sum())
    assert w.sum() == pytest.approx(100.0), "the mean weight stays 1 (same learning rate scale)"


def test_weighted_head_learns_a_tiny_shifted_part():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 3
    big_y, small_y = np.repeat([0, 1, 2], 40), np.repeat([0, 1, 2], 2)
    big_x = centres[big_y] + rng.normal(size=(120, 8))
    small_x = centres[small_y] + 6.0 * np.eye(8)[small_y + 3] + rng.normal(size=(6, 8))
    head = domain.train_weighted_head([(big_x, big_y), (small_x, small_y)], 3, epochs=60,
                                      learning_rate=1e-2, seed=0)
    assert domain.evaluate(head, big_x, big_y) > 0.9
    assert domain.evaluate(head, small_x, small_y) == 1.0


def test_recovered_fraction():
    assert domain.recovered_fraction(0.2, 0.5, 0.8) == pytest.approx(0.5)
    assert np.isnan(domain.recovered_fraction(0.9, 0.9, 0.8))


def test_features_of_in_memory_images_match_a_direct_call():
    model = _bn_model()
    images = _images(n=5, size=16, seed=2)
    out = domain.features(model, images, preprocess=None, batch_size=2)
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
    fig = domain.plot_examples({"x": _images(n=2), "y": _images(n=3)}, per_row=3)
    assert len(fig.axes) == 6
    fig = domain.plot_distance_vs_drop({"a": 0.1, "b": 0.2}, {"a": 0.3, "b": 0.5})
    assert len(fig.axes[0].collections) == 2
