"""Transferability: predict, before fine-tuning, which backbone or source will transfer best.

Taught in `05_negative_transfer`. Every score reads the target's labeled training images
only through a candidate's frozen features (or its source-classifier probabilities):

- `logme`: the log marginal evidence of a Bayesian linear model on the features (You et al., 2021).
- `leep`: log expected empirical prediction of the source classifier (Nguyen et al., 2020).
- `h_score`: tr(cov(f)^-1 cov(E[f|y])) (Bao et al., 2019); by default the regularised H-score
  of Ibrahim et al. (2022), tr(cov_a(f)^-1 (1 - a) cov(E[f|y])) with the Ledoit-Wolf shrinkage a.
- `knn_probe`: leave-one-out k-nearest-neighbour accuracy on the features.

`linear_probe` is the accuracy a candidate really reaches with a frozen backbone;
`crossover` finds where a learning curve overtakes another; `recommend` is the decision guide.
"""

from __future__ import annotations

import math

import numpy as np

from course_lib import domain, plots, splits

__all__ = ["SCORES", "logme", "leep", "h_score", "knn_probe", "scores", "truncate", "learning_curve", "fit_linear_probe",
           "linear_probe", "probe_dense_weights", "crossover", "recommend", "rank_correlations", "plot_learning_curves",
           "plot_scores_vs_accuracy"]

SCORES = ("logme", "leep", "h_score", "knn")


def _check_labeled(features, labels, min_classes: int = 2):
    f, y = domain.check_features(features), np.asarray(labels)
    if y.shape != (len(f),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError("labels must be one non-negative integer per feature vector. "
                         f"Received: labels of shape {y.shape} and dtype {y.dtype} for {len(f)} vectors.")
    if len(np.unique(y)) < min_classes:
        raise ValueError(f"Need at least {min_classes} classes. Received: labels {np.unique(y).tolist()}.")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or infinite values.")
    return f, y.astype(int)


# --------------------------------------------------------------------------------- LogME


def _evidence(z, y_norm2, *, s2, n, d, max_iter=3000, tol=1e-9):
    """Maximised log evidence / n of y = F w + noise, with z = U^T y and s2 = singular values^2."""
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        gamma = float(np.sum(beta * s2 / (alpha + beta * s2)))
        m2 = float(np.sum((beta * np.sqrt(s2) * z / (alpha + beta * s2)) ** 2))  # ||m||^2
        res2 = y_norm2 - float(np.sum(z ** 2)) + float(np.sum((alpha * z / (alpha + beta * s2)) ** 2))
        new_alpha = gamma / max(m2, 1e-12)
        new_beta = (n - gamma) / max(res2, 1e-12)
        done = abs(new_alpha / new_beta - alpha / beta) <= tol * (alpha / beta)
        alpha, beta = new_alpha, new_beta
        if done:
            break
    m2 = float(np.sum((beta * np.sqrt(s2) * z / (alpha + beta * s2)) ** 2))
    res2 = max(y_norm2 - float(np.sum(z ** 2)) + float(np.sum((alpha * z / (alpha + beta * s2)) ** 2)), 1e-12)
    logdet = float(np.sum(np.log(alpha + beta * s2))) + (d - len(s2)) * math.log(alpha)
    ev = (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - beta / 2 * res2 - alpha / 2 * m2
          - logdet / 2 - n / 2 * math.log(2 * math.pi))
    return ev / n


def logme(features, labels) -> float:
    """LogME: mean over classes of the maximised log evidence (per image) of a linear model."""
    f, y = _check_labeled(features, labels)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    s2 = s ** 2
    out = []
    for c in np.unique(y):
        target = (y == c).astype(np.float64)
        out.append(_evidence(u.T @ target, float(target @ target), s2=s2, n=n, d=d))
    return float(np.mean(out))


# ---------------------------------------------------------------------------------- LEEP


def leep(source_probs, labels) -> float:
    """LEEP: mean log-likelihood of the target labels under the source classifier's 'empirical predictor'."""
    theta = np.asarray(source_probs, dtype=np.float64)
    y = np.asarray(labels)
    if theta.ndim != 2 or len(theta) != len(y) or not len(y):
        raise ValueError("source_probs must be (n, source classes), one row per label. "
                         f"Received: source_probs of shape {theta.shape}, labels of shape {y.shape}.")
    if theta.min() < 0 or not np.allclose(theta.sum(1), 1.0, atol=1e-3):
        raise ValueError("Each row of source_probs must be a probability distribution (>= 0, sums to 1): "
                         "pass the source classifier's softmax outputs, not logits.")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError(f"labels must be non-negative integers. Received: dtype={y.dtype}.")
    onehot = np.eye(int(y.max()) + 1)[y]
    joint = onehot.T @ theta / len(y)  # P(y, z)
    cond = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)  # P(y | z)
    eep = np.sum(cond[y] * theta, axis=1)
    return float(np.mean(np.log(np.maximum(eep, 1e-300))))


# ------------------------------------------------------------------------------- H-score


def h_score(features, labels, shrinkage="auto") -> float:
    """H-score; shrinkage=None: Bao et al. (2019) with a pseudo-inverse; 'auto' or a in [0, 1]: regularised.

    The regularised H-score (Ibrahim et al., 2022, "Newer is not always better") shrinks the
    feature covariance, cov_a = (1 - a) cov + a (tr(cov) / d) I, and the between-class
    covariance by the same (1 - a); 'auto' takes a from Ledoit-Wolf. Without the (1 - a)
    factor each candidate's score is inflated by its own 1 / (1 - a).
    """
    f, y = _check_labeled(features, labels)
    f = f - f.mean(0)
    cov_f, alpha = _covariance(f, shrinkage)
    classes, index = np.unique(y, return_inverse=True)
    g = np.stack([f[y == c].mean(0) for c in classes])[index]
    cov_g = (1 - alpha) * (g.T @ g / len(f))
    return float(np.trace(np.linalg.pinv(cov_f, hermitian=True) @ cov_g))


def _covariance(f, shrinkage) -> tuple:
    """The (shrunk) covariance of centred features and the shrinkage used (0 for none)."""
    cov = f.T @ f / len(f)
    if shrinkage is None:
        return cov, 0.0
    if shrinkage == "auto":
        from sklearn.covariance import LedoitWolf

        lw = LedoitWolf(assume_centered=True).fit(f)
        return lw.covariance_, float(lw.shrinkage_)
    if isinstance(shrinkage, bool) or not isinstance(shrinkage, (int, float)) or not 0 <= shrinkage <= 1:
        raise ValueError(f"shrinkage must be 'auto', None or a number in [0, 1]. Received: {shrinkage!r}.")
    mu = np.trace(cov) / cov.shape[0]
    return (1 - shrinkage) * cov + shrinkage * mu * np.eye(cov.shape[0]), float(shrinkage)


# ----------------------------------------------------------------------------- k-NN probe


def knn_probe(features, labels, k: int = 5) -> float:
    """Leave-one-out accuracy of a k-nearest-neighbour vote (cosine similarity) on the features."""
    f, y = _check_labeled(features, labels)
    if not isinstance(k, (int, np.integer)) or not 1 <= k < len(f):
        raise ValueError(f"k must be an integer from 1 to n-1={len(f) - 1}. Received: k={k!r}.")
    z = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(f), int(y.max()) + 1))
    np.add.at(votes, (np.repeat(np.arange(len(f)), k), y[nearest].ravel()), 1.0)
    votes += 1e-3 * np.eye(votes.shape[1])[y[nearest[:, 0]]]  # ties: the nearest neighbour decides
    return float(np.mean(np.argmax(votes, 1) == y))


def scores(features, labels, source_probs=None, k: int = 5) -> dict:
    """All scores for one candidate (LEEP only when `source_probs` are given)."""
    out = {"logme": logme(features, labels), "h_score": h_score(features, labels),
           "knn": knn_probe(features, labels, k)}
    if source_probs is not None:
        out["leep"] = leep(source_probs, labels)
    return out


# ----------------------------------------------------------------- probes and learning curves


def truncate(backbone, layer: str, name: str | None = None):
    """A frozen feature extractor that stops at `layer` of `backbone` and average-pools its output."""
    import keras

    names = [l.name for l in backbone.layers]
    if layer not in names:
        raise ValueError(f"Unknown layer. Received: layer={layer!r}. "
                         f"Layers of {backbone.name} include: {', '.join(names[-8:])} (see backbone.layers).")
    out = backbone.get_layer(layer).output
    if len(out.shape) == 4:
        out = keras.layers.GlobalAveragePooling2D(name=f"{layer}_pool")(out)
    inputs = backbone.inputs[0] if len(backbone.inputs) == 1 else backbone.inputs
    model = keras.Model(inputs, out, name=name or f"{backbone.name}_to_{layer}")
    model.trainable = False
    return model


def learning_curve(fit_and_score, labels, sizes, seeds) -> np.ndarray:
    """Accuracies (seeds x sizes) of `fit_and_score(indices, seed)` on nested stratified subsets of `labels`."""
    out = np.zeros((len(seeds), len(sizes)))
    for i, seed in enumerate(seeds):  # the largest first: a class too small for it fails before any training
        subsets = {n: splits.per_class_indices(labels, int(n), seed=seed) for n in sorted(sizes, reverse=True)}
        for j, size in enumerate(sizes):
            out[i, j] = fit_and_score(subsets[size], seed)
    return out



def fit_linear_probe(train, *, C: float = 1.0, max_iter: int = 2000, class_weight=None):
    """A logistic-regression probe (standardized features), fitted to convergence on (features, labels)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    x, y = _check_labeled(*train, min_classes=2)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight))
    with threadpool_limits(1):  # small problems: one BLAS thread is faster than two that wait on each other
        clf.fit(x, y)
    return clf


def linear_probe(train, test, C: float = 1.0, max_iter: int = 2000) -> float:
    """Test accuracy of a logistic-regression head on frozen features; train/test are (features, labels)."""
    from threadpoolctl import threadpool_limits

    (x, _), (xt, yt) = _check_labeled(*train, min_classes=2), _check_labeled(*test, min_classes=1)
    if x.shape[1] != xt.shape[1]:
        raise ValueError(f"train and test features differ in size. Received: {x.shape[1]} and {xt.shape[1]}.")
    clf = fit_linear_probe(train, C=C, max_iter=max_iter)
    with threadpool_limits(1):
        return float(clf.score(xt, yt))


def probe_dense_weights(probe, num_classes: int) -> list:
    """[kernel (d, num_classes), bias] of a softmax Dense layer that predicts exactly like a fitted `fit_linear_probe`.

    The scaler folds into the weights (w / scale, b - w . mean / scale); a two-class probe's single
    logit becomes the softmax pair (0, logit); a class the probe never saw gets a very low logit.
    """
    scaler, logreg = probe[0], probe[-1]
    coef, intercept = np.asarray(logreg.coef_, "float64"), np.asarray(logreg.intercept_, "float64")
    if coef.shape[0] == 1:  # binary: p(classes_[1]) = sigmoid(z) = softmax((0, z))[1]
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    mean = np.zeros(coef.shape[1]) if scaler.mean_ is None else scaler.mean_
    scale = np.ones(coef.shape[1]) if scaler.scale_ is None else scaler.scale_
    w = coef / scale  # (classes seen, d)
    b = intercept - w @ mean
    kernel = np.zeros((coef.shape[1], int(num_classes)))
    bias = np.full(int(num_classes), -1e4)
    for j, c in enumerate(logreg.classes_):
        kernel[:, int(c)], bias[int(c)] = w[j], b[j]
    return [kernel.astype("float32"), bias.astype("float32")]


def crossover(sizes, transfer, scratch):
    """The size where `scratch` overtakes `transfer` for good (log-interpolated), or None.

    Returns None when scratch is never ahead at the largest size, and the first size when
    scratch is ahead everywhere.
    """
    sizes, a, b = (np.asarray(v, dtype=float) for v in (sizes, transfer, scratch))
    if not (sizes.ndim == 1 and sizes.shape == a.shape == b.shape and len(sizes) >= 2):
        raise ValueError(f"sizes, transfer and scratch must be 1-D and equally long (>= 2). "
                         f"Received: {sizes.shape}, {a.shape}, {b.shape}.")
    if np.any(np.diff(sizes) <= 0) or sizes[0] <= 0:
        raise ValueError(f"sizes must be positive and increasing. Received: {sizes.tolist()}.")
    gap = b - a
    if gap[-1] <= 0:
        return None
    behind = np.flatnonzero(gap <= 0)
    if not len(behind):
        return float(sizes[0])
    i = int(behind[-1])
    t = -gap[i] / (gap[i + 1] - gap[i])
    return float(np.exp(np.log(sizes[i]) + t * (np.log(sizes[i + 1]) - np.log(sizes[i]))))


# ------------------------------------------------------------------------- decision guide


def recommend(per_class: float, domain_distance: float, *, crossover_per_class: float | None = None,
              near: float = 1.5, few: float = 100) -> str:
    """Decision guide: 'freeze', 'fine-tune' or 'scratch' from labels per class and a proxy A-distance.

    Below the crossover (measured, else `few` images per class) a frozen backbone wins: freeze
    (for a far source, cut it earlier). Above it, a near source (distance < `near`) is worth
    fine-tuning; a far one is not worth more than training from scratch.
    """
    if not per_class > 0:
        raise ValueError(f"per_class must be > 0. Received: per_class={per_class!r}.")
    if not 0 <= domain_distance <= 2:
        raise ValueError("domain_distance must be a proxy A-distance in [0, 2]. "
                         f"Received: domain_distance={domain_distance!r}.")
    threshold = few if crossover_per_class is None else crossover_per_class
    if per_class < threshold:
        return "freeze"
    return "fine-tune" if domain_distance < near else "scratch"


def rank_correlations(table: dict, accuracy: dict) -> dict:
    """Spearman rank correlation of each score with accuracy, over the candidates that have it."""
    out = {}
    for score in SCORES:
        cands = [c for c in table if score in table[c]]
        if len(cands) >= 3:
            out[score] = domain.rank_correlation([table[c][score] for c in cands], [accuracy[c] for c in cands])
    return out


# ---------------------------------------------------------------------------------- plots


def plot_learning_curves(sizes, curves: dict, crossover_at=None, title: str = "Accuracy against labeled images"):
    """Mean accuracy (band: min-max over seeds) against labeled images per class, log x axis."""
    plt = plots.pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.2))
    lowest = 1.0
    for name, acc in curves.items():
        acc = np.atleast_2d(acc)
        line, = ax.plot(sizes, acc.mean(0), marker="o", label=name)
        ax.fill_between(sizes, acc.min(0), acc.max(0), color=line.get_color(), alpha=0.15)
        lowest = min(lowest, float(acc.min()))
    bottom = max(0.0, np.floor(10 * lowest - 0.5) / 10)
    if crossover_at is not None:
        ax.axvline(crossover_at, color="black", ls="--", lw=1)
        ax.text(crossover_at * 1.07, bottom + 0.62 * (1 - bottom), f"crossover\n~{crossover_at:.0f}/class", fontsize=9)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("labeled target images per class")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(bottom, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_scores_vs_accuracy(table: dict, accuracy: dict, names=SCORES):
    """One scatter per score: each candidate's score (x) against the accuracy it really reaches (y)."""
    plt = plots.pyplot()

    names = [n for n in names if any(n in row for row in table.values())]
    colours = {cand: plt.cm.tab10(i % 10) for i, cand in enumerate(table)}
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.4), squeeze=False, sharey=True)
    for ax, score in zip(axes[0], names):
        for cand, row in table.items():
            if score in row:
                ax.scatter(row[score], accuracy[cand], s=36, color=colours[cand], label=cand)
        ax.set_xlabel(score)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("linear-probe test accuracy")
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[c]) for c in table]
    fig.legend(handles, list(table), loc="lower center", ncol=min(4, len(table)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig
