"""Feature extraction against fine-tuning, measured fairly, on cached activations.

Taught in `03_fine_tuning`. This is the course's CPU shortcut for a grid of many runs: the
frozen bottom of the backbone runs once per image (and once per augmented copy), its
activations are cached on disk, and every run trains only the top blocks and the head on
them. Without augmentation this is exact. With augmentation it trains on a fixed number of
cached augmented copies instead of fresh random views every epoch, which is why the recipe
people use (`cl.recipe`, augmentation inside the model) stays the reference, and 03 checks
one cell of the grid against it.

Fair means: both arms get the same epochs, the same early stopping on the validation split,
and each its better variant (with or without augmentation) chosen on validation; accuracy
comes from a test split that chose nothing; every seed draws a new split.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from course_lib import backbones, data, features, finetune, plots, recipe, scale


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


def fixed_split(ds: data.ImageSet, seed: int, *, val: int, test: int, train_pool: int) -> dict:
    """Per class: fixed validation and test images, and a pool of at most `train_pool` to train from.

    A class with few images keeps at least one image in each part: validation and test take at
    most a quarter of it each. Indices are into `ds`.
    """
    parts = {"val": [], "test": [], "train_pool": []}
    for c, order in data.class_orders(ds.labels, seed).items():
        if len(order) < 3:
            raise ValueError(f"Class {ds.class_names[c]!r} has {len(order)} image(s); each class needs at least "
                             "3 (one each for training, validation and test). Add images or drop the class.")
        n_val, n_test = max(1, min(val, len(order) // 4)), max(1, min(test, len(order) // 4))
        parts["val"] += list(order[:n_val])
        parts["test"] += list(order[n_val:n_val + n_test])
        parts["train_pool"] += list(order[n_val + n_test:n_val + n_test + train_pool])
    return {k: np.sort(np.asarray(v, int)) for k, v in parts.items()}


def train_subsets(labels, pool, seed: int, sizes) -> dict:
    """{n: indices}: a seeded draw of `n` training images per class from `pool`, nested as n grows."""
    labels, pool = np.asarray(labels), np.asarray(pool, int)
    return {int(n): np.sort(pool[data.per_class_indices(labels[pool], int(n), seed=seed, allow_fewer=True)])
            for n in sizes}


def augmented_activations(model, ds: data.ImageSet, image_size: int, preprocess, *, copies: int,
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


def prepare(name: str, ds: data.ImageSet, split: dict, bottom, top, *, image_size: int, preprocess,
            copies: int, seed: int = 0) -> Target:
    """Cache the bottom's activations (plain for every image, augmented for the training pool)."""
    every = np.sort(np.concatenate([split["val"], split["test"], split["train_pool"]]))
    plain, _ = features.extract(bottom, ds.subset(every), image_size, preprocess, verbose=0)
    pool = split["train_pool"]
    aug = augmented_activations(bottom, ds.subset(pool), image_size, preprocess, copies=copies, seed=seed)
    feats = top.predict(plain, verbose=0, batch_size=128)
    aug_feats = top.predict(aug.reshape((-1,) + aug.shape[2:]), verbose=0, batch_size=128)
    return Target(name, ds, split, {int(i): r for r, i in enumerate(every)}, plain, feats,
                  {int(i): r for r, i in enumerate(pool)}, aug, aug_feats.reshape(copies, len(pool), -1))


def _dataset(x, y, batch_size: int, seed: int):
    """Training pipeline; with cached copies (x of rank +1), each step draws random (copy, image) pairs."""
    if x.shape[0] == len(y):
        return features.feature_dataset(x, y, batch_size, shuffle=True, seed=seed), None
    flat = x.reshape((-1,) + x.shape[2:])
    ds = features.feature_dataset(flat, np.tile(y, x.shape[0]), batch_size, shuffle=True, seed=seed)
    return ds.repeat(), math.ceil(len(y) / batch_size)


def _fit(model, x, y, val, *, epochs: int, initial_epoch: int, budget: Budget, seed: int) -> int:
    finetune.check_labels(model, (x, y)), finetune.check_labels(model, val, "validation")
    batch = scale.global_batch_size(budget.batch_size)
    train, steps = _dataset(x, y, batch, seed)
    history = model.fit(train, validation_data=features.feature_dataset(*val, batch),
                        epochs=initial_epoch + epochs, initial_epoch=initial_epoch, steps_per_epoch=steps,
                        callbacks=[recipe.early_stopping(budget.patience)], verbose=0, shuffle=False)
    return len(history.history["loss"])


def _reset_optimizer(optimizer) -> None:
    """A fresh optimizer state (step 0, zero moments) without a recompile; the learning rate stays."""
    import tensorflow as tf

    keep = {id(getattr(optimizer, "_learning_rate", None))}
    for v in optimizer.variables:
        if id(v) not in keep:
            v.assign(tf.zeros_like(v))


def _head(t: Target, budget: Budget, seed: int):
    """A freshly initialised head (seeded), compiled once per target and reused across runs.

    Compiling again would retrace the training step, about 40% of a short run on a CPU; resetting
    the weights, the dropout seeds and the optimizer state gives the same starting point.
    """
    import keras

    keras.utils.set_random_seed(seed)
    fresh = features.make_head(t.feats.shape[1], t.ds.num_classes)
    key = ("head", budget.head_lr)
    if key not in t.trainers:
        t.trainers[key] = features.compile_classifier(fresh, budget.head_lr)
        return t.trainers[key]
    head = t.trainers[key]
    for mine, new in zip(head.variables, fresh.variables):
        mine.assign(new)
    _reset_optimizer(head.optimizer)
    return head


def _stage_two(t: Target, top, head, steps: int, budget: Budget):
    """The model `top` -> head for stage 2, compiled once per schedule and reused across runs."""
    key = ("fine-tune", id(top), steps, budget.fine_tune_lr, budget.fine_tune_epochs, budget.warmup_epochs,
           budget.keep_batchnorm_frozen)
    if key not in t.trainers:
        model = finetune.classifier(top, features.make_head(t.feats.shape[1], t.ds.num_classes))
        lr = recipe.warmup_cosine(budget.fine_tune_lr, total_steps=steps * budget.fine_tune_epochs,
                                  warmup_steps=steps * budget.warmup_epochs) \
            if budget.warmup_epochs else budget.fine_tune_lr
        recipe.compile_stage(model, lr)
        t.trainers[key] = model
    model = t.trainers[key]
    for mine, trained in zip(model.layers[-1].variables, head.variables):
        mine.assign(trained)
    if model.optimizer.built:
        _reset_optimizer(model.optimizer)
    return model


def feature_extraction(t: Target, idx, budget: Budget, seed: int, augmented: bool) -> dict:
    """One run of the feature-extraction arm: a head on frozen features, the whole epoch budget."""
    head = _head(t, budget, seed)
    val = (t.arrays(t.split["val"], level="feats"), t.labels[t.split["val"]])
    epochs = _fit(head, t.arrays(idx, level="feats", augmented=augmented), t.labels[idx], val,
                  epochs=budget.total_epochs, initial_epoch=0, budget=budget, seed=seed)
    test = (t.arrays(t.split["test"], level="feats"), t.labels[t.split["test"]])
    return {"val": features.accuracy(head, *val), "test": features.accuracy(head, *test), "epochs": epochs}


def fine_tuning(t: Target, idx, top, backbone_name: str, budget: Budget, seed: int, augmented: bool) -> dict:
    """One run of the fine-tuning arm: head on frozen features, then every block of `top`, same budget."""
    start = top.get_weights()
    head = _head(t, budget, seed)
    val_feats = (t.arrays(t.split["val"], level="feats"), t.labels[t.split["val"]])
    done = _fit(head, t.arrays(idx, level="feats", augmented=augmented), t.labels[idx], val_feats,
                epochs=budget.head_epochs, initial_epoch=0, budget=budget, seed=seed)
    report = finetune.unfreeze_top(top, backbone_name, len(backbones.blocks(top, backbone_name)),
                                   budget.keep_batchnorm_frozen)  # every block of `top`
    steps = math.ceil(len(idx) / scale.global_batch_size(budget.batch_size))
    model = _stage_two(t, top, head, steps, budget)
    val = (t.arrays(t.split["val"], level="acts"), t.labels[t.split["val"]])
    total = done + _fit(model, t.arrays(idx, level="acts", augmented=augmented), t.labels[idx], val,
                        epochs=budget.fine_tune_epochs, initial_epoch=done, budget=budget, seed=seed + 1)
    test = (t.arrays(t.split["test"], level="acts"), t.labels[t.split["test"]])
    out = {"val": features.accuracy(model, *val), "test": features.accuracy(model, *test), "epochs": total,
           "trainable": report.trainable_after}
    top.set_weights(start)
    finetune.freeze(top)
    return out


ARMS = ("fe", "ft")


def run_cell(t: Target, idx, n: int, top, backbone_name: str, budget: Budget, seed: int,
             variants=(False, True)) -> dict:
    """Both arms on training images `idx`; each arm keeps its variant (augmented or not) that validates best."""
    runs = {}
    for augmented in variants:
        runs["fe", augmented] = feature_extraction(t, idx, budget, seed, augmented)
        runs["ft", augmented] = fine_tuning(t, idx, top, backbone_name, budget, seed, augmented)
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


def grid(targets: dict, top, backbone_name: str, *, sizes, seeds, budget: Budget, variants=(False, True),
         progress=None) -> list:
    """`run_cell` for every target, training size and seed: one row per (target, size, seed)."""
    rows = []
    for t in targets.values():
        for seed in seeds:
            subsets = train_subsets(t.labels, t.split["train_pool"], seed, sizes)
            for n in sizes:
                rows.append(run_cell(t, subsets[n], n, top, backbone_name, budget, seed, variants))
                if progress:
                    progress(rows[-1])
    return rows


def summarize(rows: list) -> dict:
    """{target: {n: {fe_mean, ft_mean, gain_mean, gain_std, seeds}}} over the seeds (std with ddof=1)."""
    out = {}
    for r in rows:
        out.setdefault(r["target"], {}).setdefault(r["n"], []).append(r)
    summary = {}
    for target, by_n in out.items():
        summary[target] = {}
        for n, rs in sorted(by_n.items()):
            gains = np.array([r["gain"] for r in rs])
            summary[target][n] = {
                "fe_mean": float(np.mean([r["fe"] for r in rs])), "ft_mean": float(np.mean([r["ft"] for r in rs])),
                "gain_mean": float(gains.mean()), "gain_std": float(gains.std(ddof=1)) if len(gains) > 1 else 0.0,
                "seeds": len(rs), "gains": [float(g) for g in gains]}
    return summary


def plot_gains(summary: dict, title: str | None = None):
    """Fine-tuning's test-accuracy gain over feature extraction against training images per class."""
    fig, ax = plots.pyplot().subplots(figsize=(6.4, 3.8))
    for target, by_n in summary.items():
        ns = sorted(by_n)
        means = [100 * by_n[n]["gain_mean"] for n in ns]
        stds = [100 * by_n[n]["gain_std"] for n in ns]
        ax.errorbar(ns, means, yerr=stds, marker="o", capsize=4, label=f"{target} (mean +- std, "
                    f"{by_n[ns[-1]]['seeds']} seeds)")
        for n in ns:
            ax.scatter([n] * len(by_n[n]["gains"]), [100 * g for g in by_n[n]["gains"]], s=10, alpha=0.4,
                       color=ax.lines[-1].get_color())
    ax.axhline(0, color="gray", linestyle=":")
    ax.set_xlabel("training images per class")
    ax.set_ylabel("fine-tuning - feature extraction\n(test accuracy, points)")
    ax.set_title(title or "Where fine-tuning pays")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
