"""Domain shift measured: distances between domains, evaluation across domains, and their plots.

Taught in `04_domain_mismatch`. Images are uint8 arrays of shape (n, h, w, 3); features
are float arrays of shape (n, d), as `cl.features.extract` returns them. The methods:

- `mmd2`, `proxy_a_distance`: how far a target domain is from the source, without its labels.
- `array_features`, `head_balanced_accuracy`, `embed_2d` and the `plot_*` helpers of the notebook.

Shifts made on purpose (corruptions, target styles) are in `cl.shifts`; the adaptation methods
(AdaBN, CORAL, few-shot head retraining) are in `cl.adaptation`.
"""

from __future__ import annotations

import warnings

import numpy as np

from course_lib import data, plots, shifts

__all__ = ["check_features", "median_bandwidth", "mmd2", "proxy_a_distance", "rank_correlation", "array_features",
           "balanced_accuracy", "head_balanced_accuracy", "recovered_fraction", "embed_2d", "plot_examples",
           "plot_domain_accuracy", "plot_corruption_sweep", "plot_embedding", "plot_distance_vs_drop"]

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
    images, fn = shifts.check_images(images), (data.preprocess_fn(preprocess) or (lambda x: x))
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
