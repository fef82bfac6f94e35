"""Common wrong answers to the exercises of 00, 01 and 02 fail their public or hidden tests; the right ones pass."""

import os
import types

import numpy as np
import pytest

from tests.wrong_answers import ROOT, check, failures
from tests.wrong_answers import test_cells as cells_of

# ------------------------------------------------------------------ 00_setup


def _fast_cfg():
    """The judge's `cfg` for the fast profile (what the tests read of it)."""
    import course_lib as cl

    return types.SimpleNamespace(profile=cl.config.get_profile("fast"))


def _heads(cfg):
    """00's four candidate heads, built as the notebook builds them (the tests count them their own way)."""
    import keras

    import course_lib as cl

    feature_map = cl.backbones.load("mobilenet_v2", cfg.profile.image_size, weights=None, pooling=None).output_shape[1:]

    def head(shape, hidden=None):
        layers = [keras.Input(shape)] + ([keras.layers.Flatten()] if len(shape) > 1 else [])
        return keras.Sequential(layers + ([keras.layers.Dense(hidden, activation="relu")] if hidden else [])
                                + [keras.layers.Dense(5)])

    channels = feature_map[-1]
    return {"pooled_linear": head((channels,)), "pooled_mlp": head((channels,), 256),
            "flat_linear": head(feature_map), "flat_mlp": head(feature_map, 256)}


def test_00_q1_rejects_the_biggest_head_and_raw_counts():
    import course_lib as cl

    cfg = _fast_cfg()
    labelled = 5 * cfg.profile.train_per_class
    counts = {k: m.count_params() for k, m in _heads(cfg).items()}
    per_image = {k: c / labelled for k, c in counts.items()}
    right = {"cl": cl, "np": np, "cfg": cfg, "per_image": per_image, "first_head": "pooled_linear",
             "why": f"pooled_linear fits {per_image['pooled_linear']:.0f} parameters per labelled image, the fewest"}
    check("00_setup", "q1", right, dict(right, first_head="pooled_mlp", why="the most capacity learns the most"))
    raw = {k: float(c) for k, c in counts.items()}  # forgot to divide by the labelled images
    check("00_setup", "q1", right, dict(right, per_image=raw), kinds=("hidden",))


def test_00_q2_rejects_dividing_by_255():
    import course_lib as cl

    import tensorflow as tf

    cfg = _fast_cfg()
    batch = _q3_namespace(cl, cfg.profile.image_size, model=False)["batch"]
    preprocess = cl.backbones.get("mobilenet_v2").preprocess_input
    right = {"np": np, "tf": tf, "cfg": cfg, "preprocess": preprocess, "x": preprocess(batch.astype("float32"))}
    failed = check("00_setup", "q2", right, dict(right, preprocess=lambda b: b / 255.0, x=batch / 255.0))
    assert "[-1, 1]" in failed["public"][0]


def _q3_namespace(cl, size, model=True):
    """The names 00's q3 tests read, with the real MobileNetV2 and its ImageNet weights."""
    from skimage import data as sample_images
    import tensorflow as tf

    def square(image):
        h, w = image.shape[:2]
        s = min(h, w)
        crop = image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        return tf.cast(tf.image.resize(crop, (size, size), antialias=True), tf.uint8).numpy()

    batch = np.stack([square(getattr(sample_images, n)()) for n in ("chelsea", "coffee", "astronaut", "rocket")])
    x = cl.backbones.get("mobilenet_v2").preprocess_input(batch.astype("float32"))
    if not model:
        return {"batch": batch, "x": x}
    backbone = cl.backbones.load("mobilenet_v2", image_size=size)
    cfg = types.SimpleNamespace(profile=types.SimpleNamespace(image_size=size))
    features = backbone.predict(x, verbose=0)
    return {"cl": cl, "np": np, "cfg": cfg, "batch": batch, "x": x, "backbone": backbone, "features": features,
            "feature_size": int(features.shape[-1])}


@pytest.mark.slow
def test_00_q3_rejects_raw_pixels_and_random_weights():
    import course_lib as cl

    if not os.environ.get("COURSE_MIRROR"):
        pytest.skip("needs COURSE_MIRROR (the ImageNet weights, offline)")
    right = _q3_namespace(cl, cl.config.get_profile("fast").image_size)
    raw = right["backbone"].predict(right["batch"].astype("float32"), verbose=0)
    failed = check("00_setup", "q3", right, dict(right, features=raw))
    assert "raw [0, 255] pixels" in failed["public"][0]
    size = right["cfg"].profile.image_size
    untrained = cl.backbones.load("mobilenet_v2", image_size=size, weights=None)
    # the margin: right answers match to 0.0, raw pixels differ by up to 5.4 and random weights by 4.3 (atol 1e-3)
    assert np.abs(raw - right["features"]).max() > 1.0
    check("00_setup", "q3", right, dict(right, backbone=untrained, features=untrained.predict(right["x"], verbose=0)),
          kinds=("hidden",))


# ------------------------------------------------------------------ 01_pretrained_backbones


def test_01_q1_rejects_the_largest_and_a_too_small_size():
    """The public test, on a stand-in table."""
    fitting = {96: 1, 128: 1, 160: 2, 224: 2}  # FITTING photos that keep a fitting class at each size
    ns = {"np": np, "CLASSIFIER_SIZES": list(fitting), "FITTING": ["a", "b"],
          "size_table": {s: {"pixels": (s / 224) ** 2, "fitting": n} for s, n in fitting.items()}}
    right = dict(ns, classifier_size=160, size_why="160 px keeps both fitting photos with 51% of the pixels")
    assert failures("01_pretrained_backbones", "q1", right)["public"] == []
    for wrong in (dict(right, classifier_size=224, size_why="224 px, the most detail"),
                  dict(right, classifier_size=96, size_why="96 px, 18% of the pixels")):
        assert failures("01_pretrained_backbones", "q1", wrong)["public"], wrong["classifier_size"]


@pytest.mark.slow
def test_01_q1_hidden_accepts_only_the_smallest_size_that_the_judge_measures_keeps_every_photo(mirror_root):
    """The hidden test rebuilds the photos and the classifier at each size itself (the judge never calls the
    kernel's classifier_at): of the five sizes exactly one passes; every larger and every smaller one fails."""
    import ast
    import json

    import keras
    import tensorflow as tf

    import course_lib as cl

    cells = ["".join(c["source"]) for c in json.loads(
        (ROOT / "notebooks/source/01_pretrained_backbones.ipynb").read_text())["cells"]]
    fitting_cell = ast.parse(next(c for c in cells if c.startswith("FITTING = {")))
    fitting = next(ast.literal_eval(node.value) for node in fitting_cell.body
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "FITTING")
    hidden = [code for kind, code in cells_of("01_pretrained_backbones", "q1") if kind == "hidden"]
    sizes = [96, 128, 160, 192, 224]
    passed = []
    for size in sizes:
        ns = {"np": np, "cl": cl, "keras": keras, "tf": tf, "CLASSIFIER_SIZES": sizes, "FITTING": fitting,
              "classifier_size": size, "size_why": f"{size} px keeps all 3 fitting photos"}
        try:
            for code in hidden:
                exec(code, dict(ns))
            passed.append(size)
        except AssertionError:
            pass
    assert len(passed) == 1, passed


def _01_q2_answers():
    """A stand-in classifier with the test's interface (images in, probabilities out), photos, the right answers."""
    import keras

    import course_lib as cl

    def predict(images, verbose=0):  # the class follows each image's mean brightness, on any scale
        return np.eye(5)[np.floor(images.reshape(len(images), -1).mean(axis=1) * 7).astype(int) % 5]

    classifier = types.SimpleNamespace(predict=predict)
    brightness = np.linspace(0.2, 1, 6)[:, None, None, None]  # six photos, from dark to bright
    x = (np.random.default_rng(0).uniform(0, 255, (6, 8, 8, 3)) * brightness).astype("float32")
    prep = cl.backbones.get("mobilenet").preprocess_input
    inputs = {"right ([-1, 1])": prep(x.copy()), "raw [0, 255]": x.copy(), "divided by 255": x / 255.0,
              "ResNet-style (BGR - mean)": keras.applications.resnet50.preprocess_input(x.copy())}
    preds = {v: classifier.predict(inp, verbose=0) for v, inp in inputs.items()}
    right_class = preds["right ([-1, 1])"].argmax(axis=1)
    same = {v: int(np.sum(p.argmax(axis=1) == right_class)) for v, p in preds.items()}
    assert any(0 < n < len(x) for n in same.values()), same  # a count differs from a fraction somewhere
    return {"np": np, "cl": cl, "keras": keras, "x": x, "classifier": classifier,
            "agreement": {v: n / len(x) for v, n in same.items()}}, same


def test_01_q2_rejects_counts():
    right, same = _01_q2_answers()
    check("01_pretrained_backbones", "q2", right, dict(right, agreement=same))


def test_01_q2_recounts_what_a_patched_predict_made_the_course_cell_measure():
    """All-1.0 answers (what `predict` patched before the course's cell to agree everywhere would give) pass the
    public form check and fail the hidden test, which predicts again with the classifier of the first cells."""
    right, _ = _01_q2_answers()
    failed = failures("01_pretrained_backbones", "q2", dict(right, agreement={v: 1.0 for v in right["agreement"]}))
    assert failed["hidden"] and not failed["public"], failed


def test_01_q3_rejects_the_sum_over_blocks_and_the_first_blocks():
    import course_lib as cl

    backbone = cl.backbones.load("mobilenet_v2", 32, weights=None)
    blocks = cl.backbones.blocks(backbone, "mobilenet_v2")
    total = cl.backbones.param_count(backbone)
    counts = [cl.backbones.param_count(layers) for _, layers in blocks]
    ns = {"cl": cl, "np": np, "blocks": blocks, "backbone": backbone, "total": total,
          "biggest_block": blocks[int(np.argmax(counts))][0]}
    right = dict(ns, top3_share=sum(counts[-3:]) / total)
    by_blocks = sum(counts[-3:]) / sum(counts)  # the share of the blocks, not of the backbone
    # the margin: the stem and the last convolution sit outside the blocks; the shares differ by 2.4e-4,
    # five orders of magnitude above the hidden test's tolerance of 1e-9 (rounding errors are about 1e-16)
    assert abs(by_blocks - right["top3_share"]) > 1e-4
    check("01_pretrained_backbones", "q3", right, dict(right, top3_share=by_blocks), kinds=("hidden",))
    check("01_pretrained_backbones", "q3", right, dict(right, top3_share=sum(counts[:3]) / total), kinds=("hidden",))


def test_01_q4_rejects_the_fastest_and_the_largest_size():
    speed_runs = {96: np.array([300.0, 310, 305, 290, 320]), 128: np.array([200.0, 210, 190, 205, 195]),
                  160: np.array([130.0, 140, 120, 135, 138]), 224: np.array([70.0, 72, 68, 75, 71])}
    ns = {"np": np, "speed_runs": speed_runs, "speed": {s: float(np.median(r)) for s, r in speed_runs.items()},
          "native_sizes": [96, 128, 160, 192, 224], "TARGET": 150.0}
    right = dict(ns, chosen_size=128, target_why="128 px runs at 200 images/s, above 150")
    check("01_pretrained_backbones", "q4", right, dict(right, chosen_size=96, target_why="96 px is the fastest, 305"))
    check("01_pretrained_backbones", "q4", right, dict(right, chosen_size=224, target_why="224 px has the most detail"))


# ------------------------------------------------------------------ 02_feature_extraction


def test_02_q1_rejects_a_batch_size_in_the_key():
    key = lambda backbone, split, size, preprocess: f"{size}-{preprocess}"  # noqa: E731
    cl = types.SimpleNamespace(features=types.SimpleNamespace(cache_key=key))
    answers = {"a different input size (160 instead of 224)": True, "another preprocessing function": True,
               "a larger batch size for the extraction": False,
               "the same images, in the same order, a day later": False, "fine-tuned backbone weights": True}
    ns = {"cl": cl, "backbone": None, "splits": {"val": None}, "SIZE": 224, "BACKBONE": "mobilenet_v2"}
    wrong = dict(answers, **{"a larger batch size for the extraction": True})
    check("02_feature_extraction", "q1", dict(ns, rebuilds=answers), dict(ns, rebuilds=wrong), kinds=("hidden",))


def test_02_q2_rejects_a_head_of_its_own():
    import keras

    import course_lib as cl

    inputs = keras.Input((8, 8, 3))
    backbone = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs)))
    backbone.trainable = False
    new_head = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])

    def build(head):
        image = keras.Input((8, 8, 3))
        return keras.Model(image, head(backbone(image, training=False)))

    ns = {"cl": cl, "np": np, "keras": keras, "backbone": backbone, "new_head": new_head, "SIZE": 8, "NUM_CLASSES": 3}
    another = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    check("02_feature_extraction", "q2", dict(ns, in_model=build(new_head)), dict(ns, in_model=build(another)),
          kinds=("hidden",))


def _cm():
    return np.array([[8, 2, 0], [5, 4, 1], [0, 0, 10]])  # rows: true classes; not symmetric


def _head_and_feats(cm):
    """A head and test features whose predictions count up to `cm` (what the hidden tests recount)."""
    true, pred = zip(*[(t, p) for t in range(len(cm)) for p in range(len(cm)) for _ in range(cm[t, p])])
    probs = np.eye(len(cm))[list(pred)]
    head = types.SimpleNamespace(predict=lambda features, verbose=0: probs[features[:, 0].astype(int)])
    return head, {"test": (np.arange(len(true))[:, None].astype("float32"), np.array(true))}


def test_02_q3_rejects_column_sums():
    cm, classes = _cm(), ["a", "b", "c"]
    head, feats = _head_and_feats(cm)
    right = {"np": np, "head": head, "feats": feats, "CLASSES": classes,
             "per_class_acc": {"a": 0.8, "b": 0.4, "c": 1.0}, "worst_class": "b"}
    by_columns = {c: float(cm[i, i] / cm[:, i].sum()) for i, c in enumerate(classes)}  # precision, not recall
    check("02_feature_extraction", "q3", right, dict(right, per_class_acc=by_columns, worst_class="b"),
          kinds=("hidden",))
    # answers that fit a patched count (a diagonal cm: every class all right) fail: the test recounts from the head
    eye_head, eye_feats = _head_and_feats(np.diag(cm.sum(axis=1)))
    fits_eye = dict(right, per_class_acc={c: 1.0 for c in classes}, worst_class="a")
    assert failures("02_feature_extraction", "q3", dict(fits_eye, head=eye_head, feats=eye_feats)) == {
        "public": [], "hidden": []}
    assert failures("02_feature_extraction", "q3", fits_eye)["hidden"]


def test_02_q4_rejects_the_diagonal():
    head, feats = _head_and_feats(_cm())
    right = {"np": np, "head": head, "feats": feats, "CLASSES": ["a", "b", "c"],
             "most_confused": ("b", "a"), "most_confused_count": 5}
    check("02_feature_extraction", "q4", right, dict(right, most_confused=("c", "c"), most_confused_count=10))
    # answers that fit a cm patched to [[8, 9, 0], ...] (its largest confusion elsewhere) fail: the recount finds (b, a)
    failed = failures("02_feature_extraction", "q4", dict(right, most_confused=("a", "b"), most_confused_count=9))
    assert failed["hidden"], failed


def _wilson(p, n, z=1.96):
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_02_q5_rejects_deciding_from_the_means():
    def by_interval(transfer, scratch, n):
        return "scratch" if _wilson(scratch, n)[0] > _wilson(transfer, n)[1] else "transfer"

    def by_mean(transfer, scratch, n):  # the common mistake: the higher accuracy wins, noise or not
        return "scratch" if scratch > transfer else "transfer"

    sweep, transfer_acc, scratch_acc = [5, 10, 20, 40], [0.60, 0.66, 0.70, 0.72], [0.40, 0.55, 0.71, 0.74]
    ns = {"np": np, "SWEEP": sweep, "transfer_acc": transfer_acc, "scratch_acc": scratch_acc,
          "held_labels": np.zeros(300, int), "n_held": 300}

    def answers(rule):
        return dict(ns, pick_method=rule, methods={n: rule(t, s, 300) for n, t, s in zip(sweep, transfer_acc, scratch_acc)})

    check("02_feature_extraction", "q5", answers(by_interval), answers(by_mean), kinds=("hidden",))
