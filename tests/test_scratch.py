"""The from-scratch CNN baseline: shapes, arguments, epochs rule, it learns, it is reproducible."""

import numpy as np
import pytest

from course_lib import backbones, scratch


def stripes(n_per_class=24, size=16, seed=0):
    """Two easy classes: horizontal vs vertical stripes, with noise (uint8 images)."""
    rng = np.random.default_rng(seed)
    base = (np.arange(size) // 2 % 2 * 200).astype(float)
    h = np.repeat(base[:, None], size, axis=1)
    imgs = [h, h.T]
    x = np.stack([imgs[c] for c in range(2) for _ in range(n_per_class)])
    x = np.clip(x[..., None].repeat(3, -1) + rng.normal(0, 30, x.shape + (3,)), 0, 255).astype("uint8")
    return x, np.repeat([0, 1], n_per_class)


def test_model_shapes_and_everything_trainable():
    model = scratch.make_cnn(32, 5)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 5)
    assert backbones.param_count(model, trainable_only=True) > 0
    gray = scratch.make_cnn(32, 10, channels=1, widths=(8, 16), augment=False)
    assert gray.input_shape == (None, 32, 32, 1) and gray.output_shape == (None, 10)
    assert gray.count_params() < model.count_params()


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=8, num_classes=3), "image_size must be an integer >= 32.*Received: image_size=8"),
    (dict(image_size=32, num_classes=1), "at least 2 classes. Received: num_classes=1"),
    (dict(image_size=32, num_classes=3, channels=2), "channels must be 1.*Received: channels=2"),
])
def test_bad_arguments_say_what_was_received(kwargs, match):
    with pytest.raises(ValueError, match=match):
        scratch.make_cnn(**kwargs)


def test_numpy_integers_work_and_other_types_fail_clearly():
    model = scratch.make_cnn(np.int64(32), np.int64(4), channels=np.int64(1), widths=(4, 8), augment=False)
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 4)
    for kwargs, match in ((dict(image_size=32.0, num_classes=3), r"Received: image_size=32.0\. Fix"),
                          (dict(image_size=True, num_classes=3), r"Received: image_size=True"),
                          (dict(image_size=32, num_classes=2.5), r"Received: num_classes=2.5\. Fix")):
        with pytest.raises(ValueError, match=match):
            scratch.make_cnn(**kwargs)


def test_negative_labels_fail_before_training(monkeypatch):
    import keras

    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: pytest.fail("fit ran"))
    x, y = stripes(n_per_class=4)
    with pytest.raises(ValueError, match=r"The training labels do not fit model 'scratch_cnn': it has 2 outputs.*"
                                         r"Received: labels from -1 \(smallest\) to 0 \(largest\)\. Fix: build"):
        scratch.train((x, y - 1), num_classes=2, epochs=1, widths=(4, 8))
    with pytest.raises(ValueError, match=r"The validation labels .* from 0 \(smallest\) to 2 \(largest\)"):
        scratch.train((x, y), (x, y * 2), num_classes=2, epochs=1, widths=(4, 8))


def test_epochs_for_gives_small_sets_more_epochs():
    assert scratch.epochs_for(25, 32, min_steps=150) == 150  # one step per epoch
    assert scratch.epochs_for(200, 32, min_steps=150) == 22  # 7 steps per epoch
    assert scratch.epochs_for(10**6, 32) == 10  # never fewer than min_epochs
    assert scratch.epochs_for(1, 32, min_steps=10**6) == 200  # capped


def test_learns_an_easy_task_and_is_reproducible():
    x, y = stripes()
    xv, yv = stripes(n_per_class=10, seed=1)
    model, history = scratch.train((x, y), (xv, yv), num_classes=2, epochs=15, widths=(8, 16), seed=1)
    pred = model.predict(xv.astype("float32"), verbose=0).argmax(-1)
    assert (pred == yv).mean() >= 0.9
    assert "val_accuracy" in history.history and len(history.history["loss"]) == 15
    again, _ = scratch.train((x, y), (xv, yv), num_classes=2, epochs=15, widths=(8, 16), seed=1)
    for a, b in zip(model.get_weights(), again.get_weights()):
        assert np.array_equal(a, b)


def test_grayscale_arrays_without_channel_axis():
    x, y = stripes(n_per_class=6)
    model, _ = scratch.train((x[..., 0], y), None, num_classes=3, epochs=1, widths=(4, 8))
    assert model.input_shape == (None, 16, 16, 1) and model.output_shape == (None, 3)


def test_rejects_labels_beyond_num_classes_and_non_square_images():
    x, y = stripes(n_per_class=4)
    with pytest.raises(ValueError, match="Labels go up to 1 but num_classes=1"):
        scratch.train((x, y), num_classes=1, epochs=1)
    with pytest.raises(ValueError, match=r"square images.*Received: shape=\(8, 16, 12, 3\)"):
        scratch.train((x[:, :, :12], y), epochs=1)


def test_without_epochs_the_minimum_step_rule_decides_and_the_rate_decays_unless_told_not_to():
    from course_lib import recipe

    x, y = stripes(n_per_class=4)  # 8 images: one step per epoch
    model, history = scratch.train((x, y), num_classes=2, min_steps=12, widths=(4, 8), learning_rate=1e-3,
                                   decay=False)
    assert len(history.history["loss"]) == 12, "12 steps of one batch: 12 epochs"
    assert recipe.learning_rate_now(model) == pytest.approx(1e-3)
    model, history = scratch.train((x, y), num_classes=2, min_steps=3, widths=(4, 8))
    assert len(history.history["loss"]) == 10, "never fewer than 10 epochs"
    assert recipe.learning_rate_now(model) < 1e-6, "a cosine decay ends near 0"
