"""Plots the notebooks share: image grids, feature maps, confusion matrices, curves and sweeps.

Taught in `01_pretrained_backbones` (image grids, feature maps, block sizes) and
`02_feature_extraction` (confusion matrix, misclassified images, data-size sweep, learning
curves: one stage there, two stages from `03_fine_tuning` on). Every function draws on a
new figure (or the `ax` it is given) and returns it; the notebook calls `plt.show()`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["pyplot", "image_grid", "confusion_matrix", "plot_confusion_matrix", "misclassified_grid", "history_dict",
           "learning_curves", "sweep_plot", "feature_maps", "block_parameters", "block_sweep_plot"]


def pyplot():
    """Matplotlib's pyplot, imported on first use so that `import course_lib` stays light."""
    import matplotlib.pyplot as plt

    return plt


def _as_uint8(img) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255 if img.max() > 1.0 else 1.0)
        img = (img * (255 if img.max() <= 1.0 else 1)).astype(np.uint8)
    return img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img


def image_grid(images, titles=None, *, cols: int = 6, size: float = 2.0, suptitle: str | None = None):
    """Show images in a grid with optional titles (one per image); returns the figure."""
    images = list(images)
    if not images:
        raise ValueError("image_grid needs at least one image. Received: 0 images.")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"Expected one title per image. Received: {len(titles)} titles "
                         f"for {len(images)} images.")
    cols = max(1, min(cols, len(images)))
    rows = math.ceil(len(images) / cols)
    title_space = 0.45 if titles is not None else 0.0
    fig, axes = pyplot().subplots(rows, cols, figsize=(size * cols, (size + title_space) * rows + 0.4),
                                squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(_as_uint8(images[i]), cmap="gray")
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts: row = true class, column = predicted class (scikit-learn's, with labels 0..n-1)."""
    from sklearn import metrics

    y_true, y_pred = np.asarray(y_true, int).ravel(), np.asarray(y_pred, int).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same length. Received: "
                         f"{len(y_true)} and {len(y_pred)}.")
    n = int(num_classes or (max(y_true.max(initial=-1), y_pred.max(initial=-1)) + 1))
    both = np.concatenate([y_true, y_pred])
    if len(both) and (both.min() < 0 or both.max() >= n):
        raise ValueError(f"Labels must lie in 0..{n - 1} (num_classes={n}). "
                         f"Received: labels from {both.min()} to {both.max()}.")
    if not len(y_true):
        return np.zeros((n, n), dtype=int)
    return metrics.confusion_matrix(y_true, y_pred, labels=np.arange(n))


def plot_confusion_matrix(y_true, y_pred, *, class_names, normalize: bool = False, ax=None,
                          title: str = "Confusion matrix"):
    """Draw the confusion matrix with counts (or row fractions) in each cell; returns the figure."""
    cm = confusion_matrix(y_true, y_pred, len(class_names))
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    n = len(class_names)
    if ax is None:
        _, ax = pyplot().subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n))
    ax.imshow(shown, cmap="Blues", vmin=0)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 30:
        high = shown.max() / 2 if shown.max() else 1
        for (i, j), v in np.ndenumerate(shown):
            ax.text(j, i, f"{v:.2f}" if normalize else str(v), ha="center", va="center",
                    fontsize=8, color="white" if v > high else "black")
    ax.figure.tight_layout()
    return ax.figure


def misclassified_grid(images, y_true, *, y_pred, class_names, probs=None, max_images: int = 12,
                       cols: int = 6):
    """Up to `max_images` mistakes (most confident first when `probs` is given), titled 'pred: X (p) / true: Y'."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    wrong = np.flatnonzero(y_true != y_pred)
    if not len(wrong):
        fig, ax = pyplot().subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "No misclassified images.", ha="center", va="center")
        return fig
    if probs is not None:
        probs = np.asarray(probs)
        wrong = wrong[np.argsort(-probs[wrong, y_pred[wrong]], kind="stable")]
    shown = wrong[:max_images]
    titles = []
    for i in shown:
        conf = f" ({float(probs[i, y_pred[i]]):.2f})" if probs is not None else ""
        titles.append(f"pred: {class_names[y_pred[i]]}{conf}\ntrue: {class_names[y_true[i]]}")
    order = "most confident first" if probs is not None else "in order"
    return image_grid([images[i] for i in shown], titles, cols=cols,
                      suptitle=f"{len(shown)} of {len(wrong)} misclassified images ({order})")


def history_dict(history) -> dict:
    """A Keras History (or a dict of lists) as {metric: [float per epoch]}."""
    raw = getattr(history, "history", history)
    return {k: [float(v) for v in values] for k, values in dict(raw or {}).items()}


def learning_curves(runs, *, metric: str = "accuracy", title: str | None = None, ax=None):
    """Learning curves with a dotted line where fine-tuning starts: one run's train and val, or {label: run}'s val.

    A run is a Keras History, its dict, or a two-stage record (`cl.finetune.join_histories`,
    `cl.recipe.fit_two_stages`: epochs numbered on over both stages).
    """
    many = isinstance(runs, dict) and bool(runs) and not any(isinstance(v, (list, tuple, np.ndarray))
                                                             for v in runs.values())  # {label: run}
    named = runs if many else {None: runs}
    boundaries = {r.boundary for r in named.values() if len(getattr(r, "stage_starts", ())) > 1}
    if ax is None:
        _, ax = pyplot().subplots(figsize=(7, 3.8))
    for label, run in named.items():
        curves = history_dict(run)
        keys = [f"val_{metric}"] if many else [metric, f"val_{metric}"]
        if keys[0] not in curves:
            raise ValueError(f"The history{'' if label is None else f' of {label!r}'} has no {keys[0]!r}. Received "
                             f"keys: {sorted(curves)}. Fix: pass metric= one of them.")
        for key, style in zip(keys, ("-", "--")):
            if curves.get(key):
                ax.plot(range(1, len(curves[key]) + 1), curves[key], style, marker=".", label=label or key)
    for b in sorted(boundaries):
        ax.axvline(b + 0.5, color="gray", linestyle=":")
        ax.text(b + 0.6, 0.02, "fine-tuning starts", transform=ax.get_xaxis_transform(),
                rotation=90, va="bottom", fontsize=8, color="gray")
    ax.set_xlabel("epoch (both stages, numbered on)" if boundaries else "epoch")
    ax.set_ylabel(f"val_{metric}" if many else metric)
    ax.set_title(title or ("Stage 1: train the head (backbone frozen), stage 2: fine-tune" if boundaries
                           else "training"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


def sweep_plot(xs, curves: dict, *, xlabel: str = "training images per class",
               ylabel: str = "test accuracy", chance: float | None = None, logx: bool = True, ax=None):
    """One line per method (`curves`: label -> values at `xs`); returns the figure."""
    xs = list(xs)
    for label, values in curves.items():
        if len(values) != len(xs):
            raise ValueError(f"Curve {label!r} has {len(values)} values for {len(xs)} x positions.")
    if ax is None:
        _, ax = pyplot().subplots(figsize=(6, 3.5))
    for label, values in curves.items():
        ax.plot(xs, values, marker="o", label=label)
    if chance is not None:
        ax.axhline(chance, color="gray", linestyle=":", label="chance")
    if logx:
        ax.set_xscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def feature_maps(maps: dict, channels: int = 6, size: float = 1.6):
    """One row per depth (`maps`: name -> (h, w, c) activations): the most active channels."""
    if not maps:
        raise ValueError("feature_maps needs at least one named activation. Received: {}.")
    fig, axes = pyplot().subplots(len(maps), channels, figsize=(size * channels, size * len(maps) + 0.3),
                                squeeze=False)
    for row, (name, act) in zip(axes, maps.items()):
        act = np.asarray(act)
        act = act[0] if act.ndim == 4 else act
        if act.ndim != 3:
            raise ValueError(f"Activation {name!r} must be (h, w, c) or (1, h, w, c). Received: {act.shape}.")
        order = np.argsort(act.mean(axis=(0, 1)))[::-1][:channels]
        for k, ax in enumerate(row):
            ax.axis("off")
            if k < len(order):
                ax.imshow(act[..., order[k]], cmap="viridis")
        row[0].set_title(f"{name}  {act.shape[0]}x{act.shape[1]}x{act.shape[2]}", fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def block_parameters(blocks, ax=None, title: str = "Parameters per block"):
    """Bar chart of parameter counts per block (`blocks` from `cl.backbones.blocks`)."""
    from course_lib import backbones

    names = [name for name, _ in blocks]
    counts = [backbones.param_count(layers) for _, layers in blocks]
    if ax is None:
        _, ax = pyplot().subplots(figsize=(max(6, 0.35 * len(names)), 3.2))
    ax.bar(range(len(names)), counts)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel("parameters")
    ax.set_title(title)
    ax.figure.tight_layout()
    return ax.figure


def block_sweep_plot(results: list, baseline: float | None = None, title: str | None = None, n_val: int | None = None):
    """Validation accuracy (with 95% bars when `n_val` images are given) and seconds per epoch against N blocks."""
    ns = [r["n_blocks"] for r in results]
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(10, 3.6))
    accs = np.array([r["val_accuracy"] for r in results])
    bars = 1.96 * np.sqrt(accs * (1 - accs) / n_val) if n_val else None
    left.errorbar(ns, accs, yerr=bars, marker="o", capsize=4,
                  label="fine-tuned" + (f" (95% bars, {n_val} images)" if n_val else ""))
    if baseline is not None:
        left.axhline(baseline, color="gray", linestyle=":", label="feature extraction")
    shown = list(accs - (bars if bars is not None else 0)) + list(accs + (bars if bars is not None else 0)) \
        + ([baseline] if baseline is not None else [])
    left.set_ylim(max(0.0, min(shown) - 0.05), min(1.0, max(shown) + 0.05))  # 1 point is not a cliff
    left.set_xlabel("unfrozen top blocks N")
    left.set_ylabel("val accuracy")
    left.legend(fontsize=8)
    right.bar(ns, [r["seconds_per_epoch"] for r in results], color="tab:orange")
    for n, r in zip(ns, results):
        right.annotate(f"{r['trainable_params'] / 1e3:,.0f}k params", (n, r["seconds_per_epoch"]),
                       ha="center", va="bottom", fontsize=8)
    right.set_ylim(0, 1.2 * max(r["seconds_per_epoch"] for r in results))
    right.set_xlabel("unfrozen top blocks N")
    right.set_ylabel("seconds per epoch")
    for ax in (left, right):
        ax.set_xticks(ns)
        ax.grid(alpha=0.3)
    fig.suptitle(title or "How many blocks to unfreeze")
    fig.tight_layout()
    return fig
