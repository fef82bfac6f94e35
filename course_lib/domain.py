"""Domain shift: corruptions, target styles, domain distances and evaluation across domains.

Taught in `04_domain_mismatch`. Images are uint8 arrays of shape (n, h, w, 3); features
are float arrays of shape (n, d), as `cl.features.extract` returns them. The methods:

- `corrupt`: synthetic shift (Gaussian noise, blur, contrast, colour shift, JPEG), severity 1..5.
- `stylize`: re-draw source images in a target style (sketch, cartoon, painting), for augmentation.
- `mmd2`, `proxy_a_distance`: how far a target domain is from the source, without its labels.
- `array_features`, `head_balanced_accuracy`, `embed_2d` and the `plot_*` helpers of the notebook.

The adaptation methods (AdaBN, CORAL, few-shot head retraining) are in `cl.adaptation`.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

from course_lib import data, plots

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


# ---------------------------------------------------------------------- domain distances


def check_features(x, name: str = "features") -> np.ndarray:
    """`x` as a float64 (n, d) matrix of at least 2 feature vectors, or a clear error."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name} must be a 2-D array of at least 2 feature vectors (n, d). "
                         f"Received: shape={x.shape}.")
    return x


def _sq_dists(a, b) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def median_bandwidth(x) -> float:
    """The median heuristic: the median distance between distinct feature vectors."""
    x = check_features(x, "x")
    d = _sq_dists(x, x)[np.triu_indices(len(x), k=1)]
    return float(np.sqrt(np.median(d))) or 1.0


def mmd2(x, y, bandwidth: float | None = None) -> float:
    """Squared maximum mean discrepancy with a Gaussian kernel (biased, >= 0, 0 for x == y)."""
    x, y = check_features(x, "x"), check_features(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y need the same feature size. Received: {x.shape} and {y.shape}.")
    sigma = median_bandwidth(np.concatenate([x, y])) if bandwidth is None else float(bandwidth)
    if sigma <= 0:
        raise ValueError(f"bandwidth must be > 0. Received: bandwidth={bandwidth!r}.")
    k = lambda a, b: np.exp(-_sq_dists(a, b) / (2.0 * sigma ** 2))  # noqa: E731
    return float(max(k(x, x).mean() + k(y, y).mean() - 2.0 * k(x, y).mean(), 0.0))


def proxy_a_distance(source, target, folds: int = 5, seed: int = 0) -> float:
    """Proxy A-distance 2(1 - 2*err) of a cross-validated logistic domain classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([check_features(source, "source"), check_features(target, "target")])
    y = np.r_[np.zeros(len(source)), np.ones(len(target))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    err = 1.0 - float(np.mean(cross_val_score(clf, x, y, cv=cv, scoring="balanced_accuracy")))
    return 2.0 * (1.0 - 2.0 * min(err, 0.5))


def rank_correlation(a, b) -> float:
    """Spearman rank correlation of two equally long sequences (ties get average ranks)."""
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"Need two 1-D sequences of the same length >= 2. Received: {a.shape}, {b.shape}.")
    return float(stats.spearmanr(a, b).statistic)


# ------------------------------------------------------------------ features and evaluation


def array_features(model, images, preprocess="mobilenet_v2", batch_size: int = 32) -> np.ndarray:
    """Features of in-memory uint8 images (corrupted or stylized ones, which have no files)."""
    images, fn = check_images(images), (data.preprocess_fn(preprocess) or (lambda x: x))
    chunks = [model.predict(fn(images[i:i + 256].astype(np.float32)), batch_size=batch_size, verbose=0)
              for i in range(0, len(images), 256)]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0,) + model.output_shape[1:])


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean of the per-class recalls: every class counts the same, however many images it has."""
    from sklearn.metrics import balanced_accuracy_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or not len(y_true):
        raise ValueError(f"Need two non-empty 1-D label arrays of the same length. "
                         f"Received: {y_true.shape} and {y_pred.shape}.")
    with warnings.catch_warnings():  # a class only predicted has no recall to average: not an error
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        return float(balanced_accuracy_score(y_true, y_pred))


def head_balanced_accuracy(head, x, y) -> float:
    """Balanced accuracy of a head on features."""
    pred = np.argmax(np.asarray(head(np.asarray(x, np.float32), training=False)), axis=-1)
    return balanced_accuracy(y, pred)


def recovered_fraction(source_only: float, adapted: float, in_domain: float) -> float:
    """Which part of the drop (in-domain minus source-only accuracy) a method wins back."""
    drop = in_domain - source_only
    return float((adapted - source_only) / drop) if drop > 0 else float("nan")


def embed_2d(feature_sets: dict, seed: int = 0):
    """PCA of several domains' features to 2-D; returns (points, domain name per point)."""
    from sklearn.decomposition import PCA

    names = list(feature_sets)
    x = np.concatenate([np.asarray(feature_sets[n]) for n in names])
    domain = np.concatenate([[n] * len(feature_sets[n]) for n in names])
    return PCA(n_components=2, random_state=seed).fit_transform(x), domain


# -------------------------------------------------------------------------------- plots


def plot_examples(image_sets: dict, per_row: int = 6, title: str | None = None):
    """One row of example images per named set (domains, corruptions or styles)."""
    plt = plots.pyplot()

    rows = list(image_sets)
    fig, axes = plt.subplots(len(rows), per_row, figsize=(1.6 * per_row, 1.7 * len(rows)), squeeze=False)
    for r, name in enumerate(rows):
        for c in range(per_row):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(image_sets[name]):
                ax.imshow(image_sets[name][c])
        axes[r, 0].set_title(name, loc="left", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_domain_accuracy(accuracies: dict, source: str = "photo", title: str | None = None):
    """Bar plot of accuracy per domain; the in-domain (source) bar is drawn in grey."""
    plt = plots.pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = list(accuracies)
    colours = ["grey" if n == source else "tab:blue" for n in names]
    bars = ax.bar(names, [accuracies[n] for n in names], color=colours)
    ax.bar_label(bars, fmt="%.2f")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("balanced accuracy")
    ax.set_title(title or f"Trained on {source}, tested on each domain")
    fig.tight_layout()
    return fig


def plot_corruption_sweep(results: dict, clean: float, chance: float | None = None):
    """Accuracy against severity, one line per corruption ({kind: {severity: accuracy}})."""
    plt = plots.pyplot()

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for kind, by_sev in results.items():
        sev = [0] + sorted(by_sev)
        ax.plot(sev, [clean] + [by_sev[s] for s in sorted(by_sev)], marker="o", label=kind)
    if chance is not None:
        ax.axhline(chance, color="black", ls=":", lw=1, label="chance")
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel("balanced accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Synthetic shift: accuracy against corruption severity")
    fig.tight_layout()
    return fig


def plot_embedding(points, domain, title: str = "Features of each domain (PCA, 2-D)"):
    """Scatter of 2-D embedded features, coloured by domain."""
    plt = plots.pyplot()

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name in dict.fromkeys(domain):
        sel = np.asarray(domain) == name
        ax.scatter(points[sel, 0], points[sel, 1], s=12, alpha=0.7, label=name)
    ax.legend(fontsize=8)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_distance_vs_drop(distances: dict, drops: dict, xlabel: str = "MMD² to photo"):
    """Scatter of each target domain's feature distance against its accuracy drop."""
    plt = plots.pyplot()

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name in distances:
        ax.scatter(distances[name], drops[name], s=40)
        ax.annotate(name, (distances[name], drops[name]), textcoords="offset points", xytext=(5, 4))
    ax.margins(x=0.25, y=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy drop (in-domain - target)")
    ax.set_title("Measured before labels vs. paid after")
    fig.tight_layout()
    return fig
