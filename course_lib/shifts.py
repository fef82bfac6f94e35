"""Domain shifts made on purpose: synthetic corruptions and target styles of uint8 images.

Taught in `04_domain_mismatch`. Images are uint8 arrays of shape (n, h, w, 3).

- `corrupt`: synthetic shift (Gaussian noise, blur, contrast, colour shift, JPEG), severity 1..5.
- `stylize`: re-draw source images in a target style (sketch, cartoon, painting), for augmentation.

How far a shift moves the features, and what it costs in accuracy, is measured in `cl.domain`.
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["CORRUPTIONS", "STYLES", "MAX_SEVERITY", "check_images", "hue_rotation_matrix", "corrupt", "to_sketch",
           "to_cartoon", "to_painting", "stylize"]

CORRUPTIONS = ("gaussian_noise", "blur", "contrast", "colour_shift", "jpeg")
STYLES = ("sketch", "cartoon", "art_painting")
MAX_SEVERITY = 5

# Per-severity parameters (1..5). Noise, blur, contrast and JPEG follow ImageNet-C
# (Hendrycks & Dietterich, 2019); the colour shift rotates hue by a fraction of the wheel.
_NOISE_STD = (0.08, 0.12, 0.18, 0.26, 0.38)  # in units of the 0..1 pixel range
_BLUR_SIGMA = (1.0, 2.0, 3.0, 4.0, 6.0)  # pixels at 224x224
_CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)  # kept fraction of the deviation from the mean
_HUE_TURN = (0.05, 0.1, 0.2, 0.3, 0.5)  # fraction of a full turn of the colour wheel
_JPEG_QUALITY = (25, 18, 15, 10, 7)


# ----------------------------------------------------------------------------- corruptions


def check_images(images) -> np.ndarray:
    """`images` as a uint8 (n, height, width, 3) array, or a clear error."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError("Expected uint8 RGB images of shape (n, height, width, 3). "
                         f"Received: dtype={images.dtype}, shape={images.shape}.")
    return images


def _check_severity(severity) -> int:
    if not isinstance(severity, (int, np.integer)) or not 0 <= severity <= MAX_SEVERITY:
        raise ValueError(f"severity must be an integer from 0 (clean) to {MAX_SEVERITY}. "
                         f"Received: severity={severity!r}.")
    return int(severity)


def _to_uint8(x) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _gaussian_noise(images, severity: int, seed: int = 0) -> np.ndarray:
    """Add seeded Gaussian pixel noise (ImageNet-C strengths)."""
    std = 255.0 * _NOISE_STD[severity - 1]
    noise = np.random.default_rng(seed).normal(0.0, std, size=images.shape)
    return _to_uint8(images.astype(np.float32) + noise)


def _blur(images, severity: int) -> np.ndarray:
    """Gaussian blur of each image (sigma scales with the image size, 224 px reference)."""
    from scipy import ndimage

    sigma = _BLUR_SIGMA[severity - 1] * images.shape[1] / 224.0
    out = ndimage.gaussian_filter(images.astype(np.float32), sigma=(0, sigma, sigma, 0))
    return _to_uint8(out)


def _contrast(images, severity: int) -> np.ndarray:
    """Shrink every pixel toward its image's mean grey level."""
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return _to_uint8((x - mean) * _CONTRAST[severity - 1] + mean)


def hue_rotation_matrix(turn: float) -> np.ndarray:
    """RGB -> RGB matrix that rotates hue by `turn` of a full turn, keeping luma (YIQ space)."""
    rgb2yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    angle = 2.0 * np.pi * turn
    rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    return np.linalg.inv(rgb2yiq) @ rot @ rgb2yiq


def _colour_shift(images, severity: int) -> np.ndarray:
    """Rotate the hue of every pixel (brightness kept): skies turn green, skin turns blue."""
    m = hue_rotation_matrix(_HUE_TURN[severity - 1]).astype(np.float32)
    return _to_uint8(images.astype(np.float32) @ m.T)


def _jpeg(images, severity: int) -> np.ndarray:
    """Re-encode each image as a low-quality JPEG (block artefacts, colour bleeding)."""
    from PIL import Image

    out = np.empty_like(images)
    for i, img in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=_JPEG_QUALITY[severity - 1])
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out


def corrupt(images, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """Apply one corruption at severity 1..5 (0 returns an unchanged copy) to uint8 images."""
    images, severity = check_images(images), _check_severity(severity)
    if kind not in CORRUPTIONS:
        raise ValueError(f"Unknown corruption. Received: kind={kind!r}. Allowed: {', '.join(CORRUPTIONS)}.")
    if severity == 0:
        return images.copy()
    if kind == "gaussian_noise":
        return _gaussian_noise(images, severity, seed)
    return {"blur": _blur, "contrast": _contrast, "colour_shift": _colour_shift, "jpeg": _jpeg}[kind](
        images, severity)


# ------------------------------------------------------------------------ target styles


def _grey(images) -> np.ndarray:
    return images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _lines(images, sigma: float = 1.5, *, k: float = 1.6, p: float = 0.98, threshold: float = -2.0):
    """Dark-line mask from a difference of Gaussians (XDoG, Winnemoeller et al. 2012)."""
    from scipy import ndimage

    g = _grey(images)
    fine = ndimage.gaussian_filter(g, sigma=(0, sigma, sigma))
    coarse = ndimage.gaussian_filter(g, sigma=(0, k * sigma, k * sigma))
    return (fine - p * coarse) < threshold


def to_sketch(images) -> np.ndarray:
    """A pencil-sketch look: thin dark lines on white paper, no colour, no shading."""
    lines = np.where(_lines(images), 0.0, 255.0)
    return _to_uint8(np.repeat(lines[..., None], 3, axis=-1))


def to_cartoon(images, levels: int = 5) -> np.ndarray:
    """A cartoon look: smoothed, flat colours (few levels per channel) and dark outlines."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(images.astype(np.float32), sigma=(0, 2, 2, 0))
    step = 256.0 / levels
    flat = (np.floor(smooth / step) + 0.5) * step
    return _to_uint8(np.where(_lines(images)[..., None], 20.0, flat))


def to_painting(images, seed: int = 0) -> np.ndarray:
    """A painting look: soft brush-like blur, saturated and randomly re-toned colours."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(images.astype(np.float32), sigma=(0, 1.5, 1.5, 0))
    grey = x.mean(axis=-1, keepdims=True)
    x = grey + 1.6 * (x - grey)  # more saturated
    tone = rng.uniform(0.75, 1.25, size=(len(x), 1, 1, 3)).astype(np.float32)
    return _to_uint8(x * tone)


def stylize(images, style: str, seed: int = 0) -> np.ndarray:
    """Re-draw source images in a target domain's style (augmentation toward the target)."""
    images = check_images(images)
    if style not in STYLES:
        raise ValueError(f"Unknown style. Received: style={style!r}. Allowed: {', '.join(STYLES)}.")
    draw = {"sketch": lambda x, _: to_sketch(x), "cartoon": lambda x, _: to_cartoon(x),
            "art_painting": to_painting}[style]
    out = np.empty_like(images)
    for i in range(0, len(images), 256):  # in chunks: the filters need float copies of the images
        out[i:i + 256] = draw(images[i:i + 256], seed + i)
    return out
