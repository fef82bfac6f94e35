"""Feature extraction against fine-tuning, measured fairly, on cached activations.

Taught in `03_fine_tuning` (its grid, on plain images) and `03b_fine_tuning_explorations` (with
augmented copies). This is the course's CPU shortcut for a grid of many runs: the frozen bottom
of the backbone runs once per image (and once per augmented copy), its activations are cached on
disk, and every run trains only the top blocks and the head on them. Without augmentation this
is exact. With augmentation it trains on a fixed number of cached augmented copies instead of
fresh random views every epoch, which is why the recipe people use (`cl.recipe`, augmentation
inside the model) stays the reference, and 03b checks one cell against it.

Fair means: both arms get the same epochs, the same early stopping on the validation split
and the same training images (plain, or with augmentation variants, each arm keeping the one
that validates better); accuracy comes from a test split that chose nothing; every seed draws
new training images.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from course_lib import backbones, data, features, finetune, plots, recipe, scale, splits, stats

__all__ = ["Budget", "fixed_split", "load_targets", "recipe_data", "train_subsets", "augmented_activations", "Target",
           "prepare", "feature_extraction", "fine_tuning", "ARMS", "run_cell", "grid", "summarize", "difference",
           "plot_gains"]


@dataclasses.dataclass(frozen=True)
class Budget:
    """Epochs, learning rates and early stopping shared by both arms."""

    head_epochs: int = 8  # fine-tuning's stage 1; feature extraction gets head + fine-tune epochs
    fine_tune_epochs: int = 8
    patience: int = 3
    head_lr: float = 1e-3
    fine_tune_lr: float = 1e-4
    warmup_epochs: int = 0  # > 0: warm-up then cosine decay in stage 2
    batch_size: int = 32
    keep_batchnorm_frozen: bool = True

    @property
    def total_epochs(self) -> int:
        """The epoch budget of either arm."""
        return self.head_epochs + self.fine_tune_epochs


def fixed_split(ds: data.ImageSet, seed: int, *, val: int, test: int | None, train_pool: int) -> dict:
    """Per class: fixed validation and test images, and a pool of at most `train_pool` to train from.

    A class with few images keeps at least one image in each part: validation and test take at
    most a quarter of it each (with `test=None`, the test part is every image left once validation
    and the pool are drawn, and at least a quarter of the class). Indices are into `ds`.
    """
    parts = {"val": [], "test": [], "train_pool": []}
    for c, order in splits.class_orders(ds.labels, seed).items():
        if len(order) < 3:
            raise ValueError(f"Class {ds.class_names[c]!r} has {len(order)} image(s); each class needs at least "
                             "3 (one each for training, validation and test). Add images or drop the class.")
        quarter = max(1, len(order) // 4)
        n_val = max(1, min(val, quarter))
        if test is None:  # the pool first, then every image left is a test image (at least a quarter)
            n_pool = max(1, min(train_pool, len(order) - n_val - quarter))
            parts["val"] += list(order[:n_val])
            parts["train_pool"] += list(order[n_val:n_val + n_pool])
            parts["test"] += list(order[n_val + n_pool:])
            continue
        n_test = max(1, min(test, quarter))
        parts["val"] += list(order[:n_val])
        parts["test"] += list(order[n_val:n_val + n_test])
        parts["train_pool"] += list(order[n_val + n_test:n_val + n_test + train_pool])
    return {k: np.sort(np.asarray(v, int)) for k, v in parts.items()}


def load_targets(names: dict, seed: int, *, val: int, test: int | None, train_pool: int) -> tuple[dict, dict]:
    """({key: ImageSet}, {key: fixed split}) for named course datasets, e.g. {"near": "pacs/photo"}; one line each.

    The course's own data always (a learner's `COURSE_DATASET` does not replace them): the lesson's
    claims are about these targets.
    """
    targets = {k: data.load(name, allow_override=False, verbose=False) for k, name in names.items()}
    fixed = {k: fixed_split(t, seed, val=val, test=test, train_pool=train_pool) for k, t in targets.items()}
    for k, t in targets.items():
        print(f"{k:4s} = {t.name}: {len(t)} images; validation {len(fixed[k]['val'])}, test {len(fixed[k]['test'])}, "
              f"training pool {len(fixed[k]['train_pool'])}")
    return targets, fixed


def recipe_data(target: data.ImageSet, fixed: dict, *, cfg, n: int, seed: int, val, test,
                default: str) -> tuple[data.ImageSet, dict]:
    """(dataset, {train, val, test}) for the recipe: one cell of the grid on course data, else the learner's folder.

    On the course's data the recipe trains on `n` images per class drawn with `seed` from the fixed
    split's pool, so its result can be checked against that grid cell. With `COURSE_DATASET`, the
    learner's folder (`data.load(default)` returns it) is split with `n`, `val` and `test` images
    per class (None: all, or the split's default share), and one line says how many are used.
    """
    if cfg.dataset_override is None:
        idx = train_subsets(target.labels, fixed["train_pool"], seed, [n])[n]
        parts = {"train": target.subset(idx), "val": target.subset(fixed["val"]), "test": target.subset(fixed["test"])}
        ds = target
    else:
        ds = data.load(default)
        parts = splits.split(ds, seed, train=cfg.per_class(fast=n, full=None), val=val, test=test)
        used, total = parts["train"].counts(), ds.counts()
        print("Training images per class used / available:",
              ", ".join(f"{c} {used[c]}/{total[c]}" for c in ds.class_names))
        if cfg.profile.name == "fast":
            print("The fast profile uses a few images per class so the notebook runs in minutes on a CPU. "
                  "To use all of them, run with COURSE_PROFILE=full (on a GPU, or with patience on a CPU).")
    print({name: len(part) for name, part in parts.items()}, "images for the recipe; classes:", ds.class_names)
    return ds, parts


def train_subsets(labels, pool, seed: int, sizes) -> dict:
    """{n: indices}: a seeded draw of `n` training images per class from `pool`, nested as n grows."""
    labels, pool = np.asarray(labels), np.asarray(pool, int)
    return {int(n): np.sort(pool[splits.per_class_indices(labels[pool], int(n), seed=seed, allow_fewer=True)])
            for n in sizes}


def augmented_activations(model, ds: data.ImageSet, *, image_size: int, preprocess, copies: int,
                          seed: int = 0, cache: bool = True) -> np.ndarray:
    """`copies` augmented views of every image through a frozen `model`: (copies, n, ...), cached."""
    key = dict(features.cache_key(model, ds, image_size, preprocess), augment=recipe.AUGMENT_SETTINGS,
               copies=int(copies), augment_seed=int(seed), kind="augmented_copies")
    path = features.cache_path(key)
    hit = features.read_cache(path, key, copies * len(ds)) if cache else None
    if hit is None:
        import tensorflow as tf

        images, _ = data.to_numpy(ds, image_size)
        fn = data.preprocess_fn(preprocess)
        out = []
        for k in range(copies):
            augment = recipe.augmentation(seed=seed * 1000 + 10 * k)
            for start in range(0, len(images), 64):
                batch = augment(tf.constant(images[start:start + 64], tf.float32), training=True)
                out.append(model.predict(fn(batch), verbose=0).astype("float32"))
        hit = np.concatenate(out)
        if cache:
            features.write_cache(path, key, hit, np.tile(ds.labels, copies))
    return hit.reshape((copies, len(ds)) + hit.shape[1:])


@dataclasses.dataclass
class Target:
    """One target task: its fixed split, the frozen bottom's activations and the frozen top's features."""

    name: str
    ds: data.ImageSet
    split: dict  # indices into ds: val, test, train_pool
    acts: dict  # index into ds -> row of the arrays below
    plain: np.ndarray  # (n, ...) activations of the frozen bottom, every image of the split
    feats: np.ndarray  # (n, d) pooled features of the frozen top
    aug_rows: dict  # index into ds -> row of the augmented arrays (training pool only)
    aug_plain: np.ndarray  # (copies, m, ...)
    aug_feats: np.ndarray  # (copies, m, d)
    trainers: dict = dataclasses.field(default_factory=dict, repr=False)  # compiled models, reused

    @property
    def labels(self) -> np.ndarray:
        """Labels of the whole dataset (indexed like `split`)."""
        return self.ds.labels

    def arrays(self, idx, *, level: str, augmented: bool = False) -> np.ndarray:
        """Activations (`level="acts"`) or features (`"feats"`) of images `idx`; copies first if augmented."""
        if augmented:
            return (self.aug_plain if level == "acts" else self.aug_feats)[:, [self.aug_rows[i] for i in idx]]
        return (self.plain if level == "acts" else self.feats)[[self.acts[i] for i in idx]]


def prepare(name: str, ds: data.ImageSet, *, split: dict, bottom, top, image_size: int, preprocess,
            copies: int, seed: int = 0) -> Target:
    """Cache the bottom's activations (plain for every image; `copies` augmented views of the training pool)."""
    every = np.sort(np.concatenate([split["val"], split["test"], split["train_pool"]]))
    plain, _ = features.extract(bottom, ds.subset(every), image_size=image_size, preprocess=preprocess, verbose=0)
    pool = split["train_pool"]
    feats = top.predict(plain, verbose=0, batch_size=128)
    if copies:
        aug = augmented_activations(bottom, ds.subset(pool), image_size=image_size, preprocess=preprocess,
                                    copies=copies, seed=seed)
        aug_feats = top.predict(aug.reshape((-1,) + aug.shape[2:]), verbose=0, batch_size=128)
        aug_feats = aug_feats.reshape(copies, len(pool), -1)
    else:  # no augmented copies: the grid runs without augmentation
        aug = np.zeros((0, len(pool)) + plain.shape[1:], plain.dtype)
        aug_feats = np.zeros((0, len(pool), feats.shape[-1]), feats.dtype)
    return Target(name, ds, split, {int(i): r for r, i in enumerate(every)}, plain, feats,
                  {int(i): r for r, i in enumerate(pool)}, aug, aug_feats)


def _dataset(x, y, batch_size: int, seed: int):
    """Training pipeline; with cached copies (x of rank +1), each step draws random (copy, image) pairs."""
    if x.shape[0] == len(y):
        return features.feature_dataset(x, y, batch_size=batch_size, shuffle=True, seed=seed), None
    flat = x.reshape((-1,) + x.shape[2:])
    ds = features.feature_dataset(flat, np.tile(y, x.shape[0]), batch_size=batch_size, shuffle=True, seed=seed)
    return ds.repeat(), math.ceil(len(y) / batch_size)


def _fit(model, x, *, y, val, epochs: int, budget: Budget, seed: int) -> int:
    finetune.check_labels(model, (x, y)), finetune.check_labels(model, val, "validation")
    batch = scale.global_batch_size(budget.batch_size)
    train, steps = _dataset(x, y, batch, seed)
    history = model.fit(train, validation_data=features.feature_dataset(*val, batch_size=batch), epochs=epochs,
                        steps_per_epoch=steps, callbacks=[recipe.early_stopping(budget.patience)], verbose=0,
                        shuffle=False)
    return len(history.history["loss"])


def _head(t: Target, budget: Budget, seed: int):
    """A freshly initialised head (seeded): one model per target and learning rate, reused across runs.

    Compiling again would retrace the training step, about 40% of a short run on a CPU; resetting
    the weights and the dropout seeds here, and the optimizer state at the compile
    (`features.compile_classifier(..., reuse=)`), gives the same starting point.
    """
    import keras

    keras.utils.set_random_seed(seed)
    fresh = features.make_head(t.feats.shape[1], t.ds.num_classes)
    head = t.trainers.setdefault(("head", budget.head_lr), fresh)
    for mine, new in zip(head.variables, fresh.variables):
        mine.assign(new)
    return head


def _stage_two(t: Target, top, *, steps: int, budget: Budget):
    """The model `top` -> head for stage 2: one per schedule, so that each is compiled once and reused."""
    key = ("fine-tune", id(top), steps, budget.fine_tune_lr, budget.fine_tune_epochs, budget.warmup_epochs,
           budget.keep_batchnorm_frozen)
    if key not in t.trainers:
        t.trainers[key] = finetune.classifier(top, features.make_head(t.feats.shape[1], t.ds.num_classes))
    return t.trainers[key]


def feature_extraction(t: Target, idx, *, budget: Budget, seed: int, augmented: bool) -> dict:
    """One run of the feature-extraction arm: a head on frozen features, the whole epoch budget."""
    head = features.compile_classifier(_head(t, budget, seed), budget.head_lr, reuse=t.trainers)
    val = (t.arrays(t.split["val"], level="feats"), t.labels[t.split["val"]])
    epochs = _fit(head, t.arrays(idx, level="feats", augmented=augmented), y=t.labels[idx], val=val,
                  epochs=budget.total_epochs, budget=budget, seed=seed)
    test = (t.arrays(t.split["test"], level="feats"), t.labels[t.split["test"]])
    return {"val": features.accuracy(head, *val), "test": features.accuracy(head, *test), "epochs": epochs}


def fine_tuning(t: Target, idx, *, top, backbone_name: str, budget: Budget, seed: int, augmented: bool) -> dict:
    """One run of the fine-tuning arm: `recipe.fit_two_stages` on the cache (head, then every block of `top`)."""
    start = top.get_weights()
    batch = scale.global_batch_size(budget.batch_size)
    head = _head(t, budget, seed)
    feats, acts = (t.arrays(idx, level=level, augmented=augmented) for level in ("feats", "acts"))
    val = {level: (t.arrays(t.split["val"], level=level), t.labels[t.split["val"]]) for level in ("feats", "acts")}
    finetune.check_labels(head, (feats, t.labels[idx]))
    (head_train, steps), (train, _) = _dataset(feats, t.labels[idx], batch, seed), \
        _dataset(acts, t.labels[idx], batch, seed + 1)
    model = _stage_two(t, top, steps=math.ceil(len(idx) / batch), budget=budget)
    record = recipe.fit_two_stages(
        model, train, val=val["acts"], backbone_name=backbone_name,
        first_block=len(backbones.blocks(top, backbone_name)),  # every block of `top`
        head_epochs=budget.head_epochs, fine_tune_epochs=budget.fine_tune_epochs, head_lr=budget.head_lr,
        fine_tune_lr=budget.fine_tune_lr, warmup_epochs=budget.warmup_epochs, patience=budget.patience,
        batch_size=budget.batch_size, keep_batchnorm_frozen=budget.keep_batchnorm_frozen, backbone=top,
        head=(head, head_train, val["feats"]), steps_per_epoch=steps, reuse=t.trainers)
    test = (t.arrays(t.split["test"], level="acts"), t.labels[t.split["test"]])
    out = {"val": features.accuracy(model, *val["acts"]), "test": features.accuracy(model, *test),
           "epochs": record.num_epochs, "trainable": record.unfreeze.trainable_after}
    top.set_weights(start)
    finetune.freeze(top)
    return out


ARMS = ("fe", "ft")


def run_cell(t: Target, idx, *, n: int, top, backbone_name: str, budget: Budget, seed: int,
             variants=(False, True)) -> dict:
    """Both arms on training images `idx`; each arm keeps its variant (augmented or not) that validates best."""
    if True in variants and not len(t.aug_plain):
        raise ValueError(f"run_cell: variants {tuple(variants)} include augmentation, but target {t.name!r} was "
                         "prepared with copies=0 (no augmented copies). Prepare it with copies >= 1, or pass "
                         "variants=(False,).")
    runs = {}
    for augmented in variants:
        runs["fe", augmented] = feature_extraction(t, idx, budget=budget, seed=seed, augmented=augmented)
        runs["ft", augmented] = fine_tuning(t, idx, top=top, backbone_name=backbone_name, budget=budget,
                                            seed=seed, augmented=augmented)
    row = {"target": t.name, "n": int(n), "seed": int(seed), "train_images": int(len(idx)),
           "test_images": int(len(t.split["test"]))}
    for arm in ARMS:
        best = max(variants, key=lambda a: (runs[arm, a]["val"], not a))  # ties: no augmentation
        row[arm] = runs[arm, best]["test"]
        row[f"{arm}_val"] = runs[arm, best]["val"]
        row[f"{arm}_augmented"] = bool(best)
        for a in variants:
            row[f"{arm}_{'aug' if a else 'plain'}_test"] = runs[arm, a]["test"]
            row[f"{arm}_{'aug' if a else 'plain'}_val"] = runs[arm, a]["val"]
    row["gain"] = row["ft"] - row["fe"]
    return row


def grid(targets: dict, top, *, backbone_name: str, sizes, seeds, budget: Budget, variants=(False, True),
         progress=None) -> list:
    """`run_cell` for every target, training size and seed: one row per (target, size, seed)."""
    rows = []
    for t in targets.values():
        for seed in seeds:
            subsets = train_subsets(t.labels, t.split["train_pool"], seed, sizes)
            for n in sizes:
                rows.append(run_cell(t, subsets[n], n=n, top=top, backbone_name=backbone_name, budget=budget,
                                     seed=seed, variants=variants))
                if progress:
                    progress(rows[-1])
    return rows


def summarize(rows: list, level: float = 0.95) -> dict:
    """{target: {n: {fe_mean, ft_mean, gain_mean, gain_std, gain_ci_low, gain_ci_high, seeds, gains}}}.

    The gain is fine-tuning minus feature extraction on the same seed (a paired difference); its
    interval is a Student-t interval over the seeds (`cl.stats.mean_interval`).
    """
    out = {}
    for r in rows:
        out.setdefault(r["target"], {}).setdefault(r["n"], []).append(r)
    summary = {}
    for target, by_n in out.items():
        summary[target] = {}
        for n, rs in sorted(by_n.items()):
            gains = [float(r["gain"]) for r in rs]
            ci = stats.mean_interval(gains, level)
            summary[target][n] = {
                "fe_mean": float(np.mean([r["fe"] for r in rs])), "ft_mean": float(np.mean([r["ft"] for r in rs])),
                "gain_mean": ci["mean"], "gain_std": ci["std"], "gain_ci_low": ci["low"], "gain_ci_high": ci["high"],
                "seeds": len(rs), "gains": gains, "seed_ids": [int(r["seed"]) for r in rs]}
    return summary


def difference(summary: dict, n: int, *, a: str = "far", b: str = "near", level: float = 0.95) -> dict:
    """Gain on target `a` minus gain on target `b` at `n` images per class, paired by seed, with its interval."""
    by_seed = [{s: g for s, g in zip(summary[k][n]["seed_ids"], summary[k][n]["gains"])} for k in (a, b)]
    seeds = sorted(set(by_seed[0]) & set(by_seed[1]))
    return stats.paired_interval([by_seed[0][s] for s in seeds], [by_seed[1][s] for s in seeds], level)


def plot_gains(summary: dict, title: str | None = None):
    """Fine-tuning's test-accuracy gain over feature extraction: per seed, and the mean with its 95% interval."""
    fig, ax = plots.pyplot().subplots(figsize=(6.4, 3.8))
    targets = list(summary)
    sizes = sorted({n for by_n in summary.values() for n in by_n})
    width = 0.8 / max(1, len(targets))
    for k, target in enumerate(targets):
        by_n = summary[target]
        xs = [sizes.index(n) + (k - (len(targets) - 1) / 2) * width for n in sorted(by_n)]
        means = np.array([100 * by_n[n]["gain_mean"] for n in sorted(by_n)])
        low = np.array([100 * by_n[n]["gain_ci_low"] for n in sorted(by_n)])
        high = np.array([100 * by_n[n]["gain_ci_high"] for n in sorted(by_n)])
        bars = ax.errorbar(xs, means, yerr=[means - low, high - means], fmt="o", capsize=5, linestyle="none",
                           label=f"{target}: mean and 95% interval ({by_n[sorted(by_n)[-1]]['seeds']} seeds)")
        for x, n in zip(xs, sorted(by_n)):
            ax.scatter([x + width / 4] * len(by_n[n]["gains"]), [100 * g for g in by_n[n]["gains"]], s=12,
                       alpha=0.5, color=bars[0].get_color(), marker="x")
    ax.axhline(0, color="gray", linestyle=":")
    ax.set_xticks(range(len(sizes)), [str(n) for n in sizes])
    ax.set_xlabel("training images per class (x: one seed)")
    ax.set_ylabel("fine-tuning - feature extraction\n(test accuracy, points)")
    ax.set_title(title or "Where fine-tuning pays")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
