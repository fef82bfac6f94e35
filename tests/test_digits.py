"""Digits helpers: ImageSets from arrays, MNIST geometry, nested stratified subsets, the small CNN."""

import numpy as np
import pytest

from course_lib import data, digits, scratch


def _bars(n_per_class=20, seed=0):
    """Two easy classes of 28x28 digits-like images: a horizontal or a vertical bar, jittered."""
    rng = np.random.default_rng(seed)
    x = np.zeros((2 * n_per_class, 28, 28), np.uint8)
    y = np.repeat([0, 1], n_per_class)
    for i, label in enumerate(y):
        pos = rng.integers(6, 22)
        if label == 0:
            x[i, pos - 1:pos + 2, 4:24] = 255
        else:
            x[i, 4:24, pos - 1:pos + 2] = 255
    return x, y


def test_to_imageset_gives_png_bytes_that_decode_to_rgb(isolated_cache):
    x, y = _bars(3)
    ds = digits.to_imageset(x, y, "bars")
    assert len(ds) == 6 and isinstance(ds.items[0], bytes) and ds.class_names[:2] == ["0", "1"]
    rgb, labels = data.to_numpy(ds, 56)
    assert rgb.shape == (6, 56, 56, 3) and np.array_equal(labels, y)
    assert np.array_equal(rgb[..., 0], rgb[..., 2])  # grey copied to 3 channels
    small, _ = data.to_numpy(ds, 28)
    assert np.abs(small[..., 0].astype(int) - x).max() <= 1
    assert ds.fingerprint() == digits.to_imageset(x, y, "bars").fingerprint()


def test_to_imageset_rejects_wrong_arrays():
    with pytest.raises(ValueError, match="uint8 array of shape"):
        digits.to_imageset(np.zeros((2, 28, 28), np.float32), [0, 1])
    with pytest.raises(ValueError, match="one label per image"):
        digits.to_imageset(np.zeros((2, 28, 28), np.uint8), [0])


def test_mnist_geometry_centres_a_20px_box():
    x = np.full((2, 16, 16), 200, np.uint8)
    out = digits.mnist_geometry(x)
    assert out.shape == (2, 28, 28)
    assert out[:, :4].max() == 0 and out[:, 24:].max() == 0 and out[:, :, :4].max() == 0
    assert (out[:, 4:24, 4:24] == 200).all()


def _cnn(**kwargs):
    """05's CNN (cl.digits.CNN), narrower or with fewer classes where a test says so."""
    return scratch.make_cnn(**dict(digits.CNN, **kwargs))


def test_the_digits_cnn_learns_an_easy_task_and_serves_as_a_backbone(isolated_cache):
    x, y = _bars(20, seed=0)
    xt, yt = _bars(20, seed=1)
    model, _ = scratch.train((x, y), model=_cnn(num_classes=2, widths=(8, 16), seed=0), min_steps=40,
                             learning_rate=1e-3, decay=False)
    assert digits.accuracy(model, xt, yt) >= 0.9
    feats = digits.predict(digits.feature_model(model), xt)
    assert feats.shape == (40, 128)
    with pytest.raises(ValueError, match="28x28 grayscale"):
        digits.predict(model, np.zeros((2, 16, 16), np.uint8))


def test_training_is_reproducible(isolated_cache):
    x, y = _bars(10)
    runs = [scratch.train((x, y), model=_cnn(num_classes=2, widths=(4, 8), seed=3), seed=3, **digits.TRAINING)[0]
            for _ in range(2)]
    assert np.allclose(digits.predict(runs[0], x), digits.predict(runs[1], x))


def test_the_digits_cnn_weights_depend_on_the_seed_only():
    import keras

    a = _cnn(seed=1)
    keras.utils.set_random_seed(123)  # the global RNG must not matter
    b = _cnn(seed=1)
    c = _cnn(seed=2)
    wa, wb, wc = (m.get_layer("conv2").get_weights()[0] for m in (a, b, c))
    assert np.array_equal(wa, wb) and not np.array_equal(wa, wc)
    assert a.count_params() == 421_642 and not any("batch_normalization" in type(layer).__name__.lower()
                                                     for layer in a.layers), "05's CNN: 0.4 M parameters, no BN"


def test_copy_layers_copies_only_the_named_layers():
    source, target = _cnn(seed=1), _cnn(seed=2)
    digits.copy_layers(source, target, ["conv1"])
    assert np.array_equal(target.get_layer("conv1").get_weights()[0], source.get_layer("conv1").get_weights()[0])
    assert not np.array_equal(target.get_layer("conv2").get_weights()[0], source.get_layer("conv2").get_weights()[0])
    with pytest.raises(ValueError, match="Unknown layer names"):
        digits.copy_layers(source, target, ["conv9"])
