"""Seeded stratified splits and draws of an `ImageSet`: train/val/test, n per class, the profile's caps.

Taught in `02_feature_extraction`. `split()` makes seeded stratified splits (or keeps a folder's own
train/val/test); `per_class_indices()` draws n items per class, nested as n grows; `profile_split()`
applies the active profile's sizes and says when images are left out.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING

import numpy as np

from course_lib import arguments, errors

if TYPE_CHECKING:
    from course_lib.data import ImageSet

__all__ = ["class_orders", "per_class_indices", "split", "stratified_cap", "profile_split", "unused"]


def class_orders(labels, seed: int = 0, exclude=None) -> dict:
    """Seeded random order of each class's indices (skipping `exclude`): the draw behind `per_class_indices`."""
    labels = np.asarray(labels)
    allowed = np.ones(len(labels), bool)
    if exclude is not None:
        allowed[np.asarray(exclude, int)] = False
    rng = np.random.default_rng(seed)
    return {int(c): rng.permutation(np.flatnonzero((labels == c) & allowed)) for c in np.unique(labels)}


def per_class_indices(labels, n_per_class: int, *, seed: int = 0, exclude=None,
                      allow_fewer: bool = False) -> np.ndarray:
    """Sorted indices of `n_per_class` seeded random items per class, nested as `n_per_class` grows.

    A class with fewer items is an error, unless `allow_fewer=True` (then it gives all it has).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not isinstance(n_per_class, (int, np.integer)) or n_per_class < 0:
        raise ValueError("Need 1-D labels and an integer n_per_class >= 0. Received: labels of shape "
                         f"{labels.shape}, n_per_class={n_per_class!r}.")
    orders = class_orders(labels, seed, exclude)
    short = {c: len(order) for c, order in orders.items() if len(order) < n_per_class}
    if short and not allow_fewer:
        raise ValueError(f"Not enough items for n_per_class={n_per_class}. Received: {{class: items left}} {short}. "
                         "Ask for fewer, or pass allow_fewer=True to take all of a smaller class.")
    return np.sort(np.concatenate([order[:n_per_class] for order in orders.values()] or [np.zeros(0, int)]))


def split(ds: ImageSet, seed: int = 0, *, train=None, val=None, test=None,
          val_fraction: float = 0.15, test_fraction: float = 0.15) -> dict:
    """Seeded stratified split; counts are per class (None: use the fractions/the rest)."""
    seed, train, val, test, val_fraction, test_fraction = arguments.split_args(
        seed, train, val=val, test=test, val_fraction=val_fraction, test_fraction=test_fraction)
    if ds.splits is not None and "train" not in set(ds.splits):
        raise errors.EmptySplitError(
            f"{ds.name} has {' and '.join(sorted(set(ds.splits), key=['val', 'test'].index))} splits but no "
            "train split, and a model is never trained on test images. Received: a <split>/<class>/<image> "
            "folder without train/ (or its images were all skipped). Fix: add a train/ folder with the same "
            "class folders, or rename the split you mean to train on to train/.")
    if ds.splits is not None:
        return _presplit(ds, seed, train=train, val=val, test=test, val_fraction=val_fraction,
                         test_fraction=test_fraction)
    orders = class_orders(ds.labels, seed)
    parts, short = {"train": [], "val": [], "test": []}, []
    asks_val = val if val is not None else val_fraction  # 0 (or 0.0) asks for no split: nothing to warn about
    asks_test = test if test is not None else test_fraction
    for label in range(ds.num_classes):
        idx = orders.get(label, np.array([], int))
        n = len(idx)
        want_val = val if val is not None else max(int(round(n * val_fraction)), int(val_fraction > 0))
        want_test = test if test is not None else max(int(round(n * test_fraction)), int(test_fraction > 0))
        n_val = min(want_val, max(n // 3, 1 if n >= 2 and asks_val else 0))
        n_test = min(want_test, max(n // 3, 1 if n - n_val >= 2 and asks_test else 0))
        n_train = n - n_val - n_test if train is None else min(train, n - n_val - n_test)
        if n_val < want_val or n_test < want_test or (n_val == 0 and asks_val) or (n_test == 0 and asks_test):
            got = ", ".join(f"{k} {m}" for k, m, asked in (("val", n_val, asks_val),
                                                             ("test", n_test, asks_test)) if asked)
            short.append(f"{ds.class_names[label]}: {n} images -> train {n_train}, {got}")
        parts["val"] += list(idx[:n_val])
        parts["test"] += list(idx[n_val:n_val + n_test])
        parts["train"] += list(idx[n_val + n_test:n_val + n_test + n_train])
    if short:
        asked = ", ".join(f"{k} {v if v is not None else f'{frac:.0%}'}" for k, v, frac in
                          (("val", val, val_fraction), ("test", test, test_fraction))
                          if (v if v is not None else frac))
        _warn_outside(f"Class(es) too small for this split (asked per class: {asked}): {'; '.join(short)}. "
                      "A class keeps at least 1 training image and gives val and test at most a third "
                      "of its images each, so these get fewer held-out images than asked and their "
                      "accuracies are noisier. Add images to these classes, or ask for fewer per class.",
                      errors.SmallClassWarning)
    return {k: dataclasses.replace(ds.subset(sorted(v)), part=k) for k, v in parts.items()}


def _warn_outside(message: str, category) -> None:
    """Warn, pointing at the first caller outside course_lib (the notebook cell, not this file)."""
    import sys

    level, frame = 2, sys._getframe(1)  # 1 is this function, 2 its caller
    while frame is not None and frame.f_globals.get("__name__", "").startswith("course_lib"):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)


def _presplit(ds, seed, *, train, val, test, val_fraction, test_fraction=0.15) -> dict:
    out = {name: ds.subset(np.flatnonzero(ds.splits == name)) for name in ("train", "val", "test")}
    for missing in ("val", "test"):  # a split the folder lacks is carved from train, seeded and stratified
        if not len(out[missing]):
            pool = dataclasses.replace(out["train"], splits=None)
            inner = split(pool, seed, train=None, val=val if missing == "val" else 0,
                          test=test if missing == "test" else 0,
                          val_fraction=val_fraction if missing == "val" else 0.0, test_fraction=test_fraction if missing == "test" else 0.0)
            out["train"], out[missing] = inner["train"], inner[missing]
            print(f"Your folder has no {missing} split: {len(out[missing])} images were carved from train "
                  "(seeded, stratified).")
    limits = {"train": train, "val": val, "test": test}
    return {k: dataclasses.replace(_cap(v, limits[k], seed), part=k, splits=None) for k, v in out.items()}


def _cap(ds: ImageSet, per_class, seed: int) -> ImageSet:
    """At most `per_class` images of each class, drawn with the seed (None: all)."""
    if per_class is None:
        return ds
    return ds.subset(per_class_indices(ds.labels, per_class, seed=seed, allow_fewer=True))


def stratified_cap(ds: ImageSet, total: int | None, *, seed: int = 0) -> ImageSet:
    """At most `total` images of `ds`, stratified: taken one per class in turn (seeded), so classes stay as even as they can."""
    if total is None or len(ds) <= total:
        return ds
    if total < 1:
        raise ValueError(f"A total cap must be at least 1 image. Received: total={total!r}.")
    orders = class_orders(ds.labels, seed)
    rng = np.random.default_rng(seed + 1)
    picked, depth = [], 0
    while len(picked) < total:
        row = [idx[depth] for idx in orders.values() if depth < len(idx)]
        picked += list(rng.permutation(row)[: total - len(picked)])  # the last round: seeded classes
        depth += 1
    return ds.subset(sorted(int(i) for i in picked))


def profile_split(ds: ImageSet, cfg) -> dict:
    """Split a dataset with the per-class sizes and total caps of the active profile; say when images are left out."""
    p = cfg.profile
    parts = split(ds, cfg.seed, train=p.train_per_class, val=p.val_per_class, test=p.test_per_class,
                  val_fraction=p.val_fraction, test_fraction=p.test_fraction)
    totals = {"train": getattr(p, "train_total", None), "val": getattr(p, "val_total", None),
              "test": getattr(p, "test_total", None)}
    capped = {k: stratified_cap(v, totals[k], seed=cfg.seed) for k, v in parts.items()}
    hit = [k for k in parts if len(capped[k]) < len(parts[k])]
    parts = {k: dataclasses.replace(v, part=k) for k, v in capped.items()}
    used = sum(len(v) for v in parts.values())
    if used < len(ds):
        have = ds.counts().values()
        limit = f"{p.train_per_class}/{p.val_per_class}/{p.test_per_class} per class"
        if any(totals.values()):
            limit += f" and {totals['train']}/{totals['val']}/{totals['test']} in total"
        print(f"{p.name.capitalize()} profile: {used} of your {len(ds)} images are used, at most {limit} "
              f"for train/val/test (your {ds.num_classes} classes have {min(have)} to {max(have)} images"
              + (f"; the total cap, stratified, applies to {'/'.join(hit)}: "
                 + ", ".join(f"{k} {len(parts[k])}" for k in hit) if hit else "")
              + "). To use all of them: COURSE_PROFILE=full (a GPU is advised; on a CPU it takes much longer).")
    return parts


def unused(ds: ImageSet, parts: dict, total: int | None = None, *, seed: int = 0) -> ImageSet:
    """The images of `ds` in none of `parts` (at most `total`, stratified): held out, chosen by nothing."""
    taken = {_key(item) for part in parts.values() for item in part.items}
    rest = [i for i, item in enumerate(ds.items) if _key(item) not in taken]
    return stratified_cap(dataclasses.replace(ds.subset(rest), part="unused"), total, seed=seed)


def _key(item):
    """A hashable identity for an item (a path, or encoded bytes)."""
    return item if isinstance(item, (str, bytes)) else str(item)

