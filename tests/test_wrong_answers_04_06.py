"""Common wrong answers to the exercises of 04, 05 and 06 fail their public or hidden tests; the right ones pass."""

import types

import numpy as np

from tests.wrong_answers import check, failures

# ------------------------------------------------------------------ 04_domain_mismatch


def _cl():
    import course_lib as cl

    return cl


def _lower_contrast(images, keep):
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip(np.round(mean + keep * (x - mean)), 0, 255).astype(np.uint8)


def test_04_q1_rejects_the_batch_mean():
    def batch_mean(images, keep):  # the common mistake: one mean over the whole batch mixes the images
        x = images.astype(np.float32)
        return np.clip(np.round(x.mean() + keep * (x - x.mean())), 0, 255).astype(np.uint8)

    ns = {"np": np, "cl": _cl()}
    failed = check("04_domain_mismatch", "q1", dict(ns, lower_contrast=_lower_contrast),
                   dict(ns, lower_contrast=batch_mean))
    assert "own mean" in failed["public"][0]


def _sq(a, b):
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def test_04_q2_rejects_a_cross_term_counted_once():
    def mmd(x, y, sigma, cross=2.0):
        k = lambda a, b: np.exp(-_sq(np.asarray(a, float), np.asarray(b, float)) / (2.0 * sigma ** 2))  # noqa: E731
        return float(k(x, x).mean() + k(y, y).mean() - cross * k(x, y).mean())

    ns = {"np": np, "cl": _cl()}
    check("04_domain_mismatch", "q2", dict(ns, mmd2_rbf=mmd), dict(ns, mmd2_rbf=lambda x, y, s: mmd(x, y, s, 1.0)))


def _power(c, p):
    values, vectors = np.linalg.eigh(c)
    return (vectors * values ** p) @ vectors.T


def test_04_q3_rejects_recolouring_without_whitening():
    def coral(xs, xt, eps=1.0, whiten=True):
        eye = eps * np.eye(xs.shape[1])
        w = _power(np.cov(xs, rowvar=False) + eye, -0.5) if whiten else np.eye(xs.shape[1])
        return (xs - xs.mean(0)) @ w @ _power(np.cov(xt, rowvar=False) + eye, 0.5) + xt.mean(0)

    ns = {"np": np, "cl": _cl()}
    check("04_domain_mismatch", "q3", dict(ns, coral_align=coral),
          dict(ns, coral_align=lambda xs, xt, eps=1.0: coral(xs, xt, eps, whiten=False)))


def test_04_q4_rejects_a_generator_per_class():
    def picks(labels, k, seed=0, shared=True):
        labels = np.asarray(labels)
        rng = np.random.default_rng(seed)
        out = [(rng if shared else np.random.default_rng(seed + c)).permutation(np.flatnonzero(labels == c))[:k]
               for c in np.unique(labels)]
        return np.sort(np.concatenate(out))

    ns = {"np": np, "cl": _cl()}
    check("04_domain_mismatch", "q4", dict(ns, pick_k_per_class=picks),
          dict(ns, pick_k_per_class=lambda labels, k, seed=0: picks(labels, k, seed, shared=False)), kinds=("hidden",))


def test_04_q5_rejects_the_largest_gain_within_the_noise():
    def beyond(gains, noise_width):
        best = max(gains, key=gains.get)
        return best if gains[best] > noise_width else "source only"

    def largest(gains, noise_width):  # the common mistake: the largest gain, noise or not
        return max(gains, key=gains.get)

    label_free = {"AdaBN": 0.02, "CORAL": 0.01}  # both within a noise of 0.05
    ns = {"np": np, "label_free": label_free, "n_test": {"art": 250, "sketch": 150},  # the tests' noise at 400
          "TARGETS": ["art", "sketch"]}                                             # images: 0.049
    check("04_domain_mismatch", "q5", dict(ns, choose_label_free=beyond, label_free_choice="source only"),
          dict(ns, choose_label_free=largest, label_free_choice="AdaBN"), kinds=("hidden",))


# ------------------------------------------------------------------ 05_negative_transfer


def test_05_q1_rejects_the_first_lead():
    sizes = [10, 30, 100, 300]
    transfer, scratch = np.array([0.8, 0.7, 0.8, 0.6]), np.array([0.7, 0.75, 0.78, 0.7])  # ahead at 30, behind at 100
    ns = {"np": np, "SIZES": sizes, "transfer": transfer, "scratch": scratch, "gap": scratch - transfer}
    check("05_negative_transfer", "q1", dict(ns, first_scratch_win=300), dict(ns, first_scratch_win=30),
          kinds=("hidden",))


def _interval(runs, n=200):  # the notebook's interval() on n = 200 test images (y_test below)
    runs = np.atleast_1d(np.asarray(runs, dtype=float))
    z, p = 1.96, float(runs.mean())
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min((centre - half) / (1 + z * z / n), runs.min()), max((centre + half) / (1 + z * z / n), runs.max())


def test_05_q2_rejects_an_option_below_the_best():
    runs = {"fine-tune (all layers)": [0.55, 0.57], "frozen (all layers)": [0.30, 0.32],
            "reinitialise top": [0.80, 0.82], "scratch": [0.78, 0.81]}
    ns = {"np": np, "repair_runs": runs, "y_test": np.zeros(200, int)}
    right = dict(ns, choice="scratch", why="scratch reached 0.795, within the noise of the best, 0.810")
    check("05_negative_transfer", "q2", right,
          dict(ns, choice="fine-tune (all layers)", why="fine-tuning everything reached 0.560, and it uses the source"))


def test_05_q3_rejects_normalising_over_the_source_classes():
    def leep(theta, y, axis=0):
        theta, y = np.asarray(theta, dtype=float), np.asarray(y)
        joint = np.eye(y.max() + 1)[y].T @ theta / len(y)
        conditional = joint / joint.sum(axis=axis, keepdims=True)
        return float(np.mean(np.log(np.sum(conditional[y] * theta, axis=1))))

    cl = _cl()
    rng = np.random.default_rng(3)
    probs, labels = rng.dirichlet(np.ones(4), size=30), rng.integers(0, 3, 30)
    ns = {"np": np, "cl": cl, "source_probs": {"USPS CNN": probs}, "y_pool": labels, "rank_idx": np.arange(30)}
    check("05_negative_transfer", "q3", dict(ns, my_leep=leep), dict(ns, my_leep=lambda t, y: leep(t, y, axis=1)),
          kinds=("hidden",))


def test_05_q4_rejects_a_reversed_regret():
    table = {"a": {"logme": 0.3}, "b": {"logme": 0.9}, "c": {"logme": 0.1}}
    accuracy = {"a": 0.85, "b": 0.80, "c": 0.60}
    ns = {"table": table, "accuracy": accuracy, "best_by_logme": "b"}
    check("05_negative_transfer", "q4", dict(ns, regret=0.05), dict(ns, regret=-0.05))


# ------------------------------------------------------------------ 06_capstone


class _Split:
    def __init__(self, counts):
        self._counts = counts

    def counts(self):
        return dict(enumerate(self._counts))


def test_06_q1_rejects_reading_the_class_weights_from_the_test_split():
    splits = {"train": _Split([40, 10]), "test": _Split([12, 10])}
    ns = {"np": np, "splits": splits, "split_imbalance": {"train": 4.0, "test": 1.2}, "use_class_weights": True,
          "headline_metric": "balanced accuracy"}
    right = dict(ns, reason={"class weights": "train", "headline metric": "test"})
    failed = check("06_capstone", "q1", right, dict(ns, reason={"class weights": "test", "headline metric": "test"}),
                   kinds=("hidden",))
    assert "what the model learns from" in failed["hidden"][0]
    # the old check took any sentence with a digit or the word 'class'; a sentence is no longer an answer
    check("06_capstone", "q1", right, dict(ns, reason="the class ratio was 1.2"))


def test_06_q2_rejects_the_lowest_score_first():
    cl = _cl()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    train_features = {"good": (np.eye(3)[labels] * 3 + rng.normal(size=(60, 3)), labels),
                      "noise": (rng.normal(size=(60, 3)), labels)}
    scores = {n: cl.transferability.logme(*train_features[n]) for n in train_features}
    ns = {"np": np, "cl": cl, "candidates": ["good", "noise"], "train_features": train_features,
          "splits": {"train": types.SimpleNamespace(labels=labels)}, "logme_scores": scores}
    failed = check("06_capstone", "q2", dict(ns, ranking=sorted(scores, key=scores.get, reverse=True)),
                   dict(ns, ranking=sorted(scores, key=scores.get)), kinds=("public",))
    assert "highest LogME" in failed["public"][0]


class _Model:
    def __init__(self, probs):
        self.probs = probs

    def predict(self, x, **kwargs):
        return self.probs[: len(x)]


def test_06_q4_rejects_an_index_for_a_name(tmp_path):
    import course_lib as cl
    from tests.conftest import write_image

    probs = np.array([[0.1, 0.9], [0.7, 0.3], [0.4, 0.6], [0.8, 0.2]], "float32")
    files = [str(write_image(tmp_path / f"{k}.png", seed=k)) for k in range(4)]  # the hidden test reads them
    ns = {"np": np, "cl": cl, "reloaded": _Model(probs), "new_files": files, "image_size": 8,
          "load_images": lambda paths: np.zeros((len(paths), 2, 2, 3), "uint8"),
          "ds": types.SimpleNamespace(class_names=["cat", "dog"])}

    def right(model, paths):
        p = model.predict(ns["load_images"](paths).astype("float32"), verbose=0)
        return [(ns["ds"].class_names[int(r.argmax())], float(r.max())) for r in p]

    def index(model, paths):  # the class index, not its name
        return [(int(r.argmax()), float(r.max())) for r in model.predict(ns["load_images"](paths))]

    check("06_capstone", "q4", dict(ns, predict_files=right), dict(ns, predict_files=index))


def test_06_q3_is_judged_by_the_paired_rule(monkeypatch):
    cl = _cl()
    fe = np.array([True] * 30 + [False] * 10)
    within, beyond = fe.copy(), fe.copy()
    within[30:33] = True  # fine-tuning right on 3 more images of 40: +0.075, 1.96 x se = 0.083
    beyond[30:40] = True  # 10 more: +0.25, far beyond
    monkeypatch.setattr(cl.data, "to_numpy", lambda ds, size: (np.zeros((40, 2, 2, 3), "uint8"), np.zeros(40, int)))

    def answers(ft_right, export_choice, why=None):
        paired = cl.stats.paired_accuracy_gain(ft_right, fe)
        why = why or f"fine-tuning gained {paired['gain']:+.3f}, paired standard error {paired['se']:.3f}"
        flags = {"fe_model": fe, "ft_model": ft_right}  # a model that predicts class 0 exactly where it is right
        return dict({k: _Model(np.eye(2)[1 - np.asarray(v, int)]) for k, v in flags.items()}, np=np, cl=cl,
                    val_gain=paired["gain"], val_gain_se=paired["se"], splits={"val": None}, image_size=2,
                    export_choice=export_choice, why=why)

    p_within, p_beyond = (cl.stats.paired_accuracy_gain(ft, fe) for ft in (within, beyond))
    assert p_within["gain"] < 1.96 * p_within["se"] and p_beyond["gain"] > 1.96 * p_beyond["se"]
    # fine-tuning within the paired noise (the higher validation accuracy, or a test split that favoured it)
    failed = check("06_capstone", "q3", answers(within, "feature extraction"), answers(within, "fine-tuning"))
    assert "paired noise" in failed["public"][0]
    # feature extraction when fine-tuning is better beyond the noise (say, because test accuracy said so)
    check("06_capstone", "q3", answers(beyond, "fine-tuning"), answers(beyond, "feature extraction"))
    # a why with a digit but without the measured gain and its standard error
    failed = failures("06_capstone", "q3", answers(within, "feature extraction", "within the noise of 1 image, so "
                                                                                 "the cheaper one"))
    messages = failed["public"] + failed["hidden"]
    assert messages and all("export_choice" not in m and "1.96 *" not in m for m in messages)
