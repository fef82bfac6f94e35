"""How sure is a difference? Paired means with 95% intervals, and the noise of a paired comparison.

Taught in `03_fine_tuning` (a gain over seeds, as a mean with a 95% interval) and `06_capstone`
(keep fine-tuning only when its validation gain is beyond the noise of a paired difference).
Two methods compared on the same seeds, or on the same images, are compared *pairwise*: the
difference on each seed (or image) cancels what the two runs share, so its spread is the noise
that matters, not the spread of either method alone.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["mean_interval", "paired_interval", "paired_accuracy_gain"]


def _t_quantile(df: int, level: float) -> float:
    """Two-sided Student-t quantile for `level` (0.95: the 97.5th percentile) with `df` degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df))


def mean_interval(values, level: float = 0.95) -> dict:
    """Mean of `values` with a Student-t interval: {mean, std, se, low, high, n} (low = high = mean for n < 2)."""
    x = np.asarray(values, dtype="float64").ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"mean_interval needs at least one finite value. Received: {x.tolist()!r}. "
                         "Fix: pass the per-seed (or per-image) differences as numbers.")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (0.95 for a 95% interval). Received: {level!r}.")
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "std": 0.0, "se": math.inf, "low": -math.inf, "high": math.inf, "n": 1}
    std = float(x.std(ddof=1))
    se = std / math.sqrt(x.size)
    half = _t_quantile(x.size - 1, level) * se
    return {"mean": mean, "std": std, "se": se, "low": mean - half, "high": mean + half, "n": int(x.size)}


def paired_interval(a, b, level: float = 0.95) -> dict:
    """The paired difference a - b (same seeds or items, in the same order): `mean_interval` of a_i - b_i."""
    a, b = np.asarray(a, dtype="float64").ravel(), np.asarray(b, dtype="float64").ravel()
    if a.shape != b.shape:
        raise ValueError(f"A paired difference needs one value of each method per seed (or image), in the same "
                         f"order. Received {a.size} and {b.size} values. Fix: pass results of the same seeds.")
    return mean_interval(a - b, level)


def paired_accuracy_gain(correct_a, correct_b) -> dict:
    """Accuracy of a minus accuracy of b on the same images, with the standard error of that paired difference.

    `correct_a`, `correct_b`: one boolean per image (was the prediction right?). Returns {gain, se, n,
    a_only, b_only}: the images only a got right and only b got right are what the difference rests on.
    """
    a, b = np.asarray(correct_a, dtype=bool).ravel(), np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"paired_accuracy_gain needs one right/wrong flag per image for both models, on the same "
                         f"images (at least 2). Received {a.size} and {b.size} flags. Fix: compare predictions on "
                         "the same validation images, in the same order.")
    d = a.astype("float64") - b.astype("float64")
    return {"gain": float(d.mean()), "se": float(d.std(ddof=1) / math.sqrt(d.size)), "n": int(d.size),
            "a_only": int(np.sum(a & ~b)), "b_only": int(np.sum(b & ~a))}
