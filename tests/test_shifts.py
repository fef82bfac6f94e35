"""Domain shifts made on purpose (course_lib/shifts.py): corruptions and target styles."""

import numpy as np
import pytest

from course_lib import shifts

from .conftest import blocky_images


# ----------------------------------------------------------------------------- corruptions


@pytest.mark.parametrize("kind", shifts.CORRUPTIONS)
def test_corruptions_keep_shape_and_dtype_and_grow_with_severity(kind):
    x = blocky_images(size=112, block=4)
    dists = []
    for severity in range(shifts.MAX_SEVERITY + 1):
        y = shifts.corrupt(x, kind, severity, seed=1)
        assert y.dtype == np.uint8 and y.shape == x.shape
        dists.append(np.abs(y.astype(float) - x).mean())
    assert dists[0] == 0.0, "severity 0 is the clean image"
    assert dists[1] > 0 and dists[-1] > dists[1], f"{kind}: distortion must grow, got {dists}"


def test_corruption_inputs_are_checked():
    x = blocky_images()
    with pytest.raises(ValueError, match="Allowed: gaussian_noise"):
        shifts.corrupt(x, "fog", 1)
    with pytest.raises(ValueError, match="severity=6"):
        shifts.corrupt(x, "blur", 6)
    with pytest.raises(ValueError, match="dtype=float64"):
        shifts.corrupt(x.astype(float), "blur", 1)


def test_noise_is_seeded_and_contrast_keeps_the_mean():
    x = blocky_images()
    a, b, c = (shifts.corrupt(x, "gaussian_noise", 3, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    low = shifts.corrupt(x, "contrast", 5)
    assert np.allclose(low.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=1.0)
    assert np.all(low.std(axis=(1, 2, 3)) < 0.1 * x.std(axis=(1, 2, 3)))


def test_colour_shift_rotates_hue_but_keeps_grey_and_brightness():
    assert np.allclose(shifts.hue_rotation_matrix(0.0), np.eye(3))
    assert np.allclose(shifts.hue_rotation_matrix(1.0), np.eye(3))
    grey = np.full((1, 8, 8, 3), 128, np.uint8)
    assert np.array_equal(shifts.corrupt(grey, "colour_shift", 5), grey)
    luma = np.array([0.299, 0.587, 0.114])
    assert np.allclose(luma @ shifts.hue_rotation_matrix(0.3), luma), "brightness (luma) is kept"
    reddish = np.zeros((1, 8, 8, 3), np.uint8) + np.array([180, 110, 100], np.uint8)
    shifted = shifts.corrupt(reddish, "colour_shift", 5).astype(float)
    assert shifted[0, 0, 0].argmax() != 0, "half a turn moves red away from red"


# ---------------------------------------------------------------------------------- styles


def test_styles_look_like_their_domains():
    x = blocky_images(size=64)
    sketch = shifts.stylize(x, "sketch")
    assert np.array_equal(sketch[..., 0], sketch[..., 1]) and np.array_equal(sketch[..., 1], sketch[..., 2])
    assert set(np.unique(sketch)) <= {0, 255} and (sketch == 255).mean() > 0.5, "dark lines on white"
    cartoon = shifts.stylize(x, "cartoon")
    assert len(np.unique(cartoon)) <= 6, "flat colours: 5 levels per channel plus the outline grey"
    painting = shifts.stylize(x, "art_painting", seed=3)
    assert painting.shape == x.shape and not np.array_equal(painting, x)
    assert np.array_equal(painting, shifts.stylize(x, "art_painting", seed=3)), "seeded"
    many = np.concatenate([x] * 70)  # 280 images: processed in two chunks
    assert np.array_equal(shifts.stylize(many, "sketch")[-4:], sketch)
    with pytest.raises(ValueError, match="Allowed: sketch, cartoon, art_painting"):
        shifts.stylize(x, "photo")
