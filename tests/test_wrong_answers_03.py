"""Common wrong answers to 03's and 03b's new exercises fail their tests (the tests run as the notebook has them)."""

import json
import math
import pathlib
import types

import numpy as np
import pytest

from tests.wrong_answers import check, failures
from tests.wrong_answers import test_cells as question_tests  # not collected as a test

ROOT = pathlib.Path(__file__).parents[1]


def _failures(notebook: str, question: str, ns: dict) -> int:
    """How many of the question's test cells fail on the answers in `ns`."""
    return sum(len(cells) for cells in failures(notebook, question, ns).values())


def _right_verdict(low, high):
    return "pays" if low > 0 else "hurts" if high < 0 else "cannot tell"


def _mean_verdict(low, high):  # the common mistake: read the mean (the interval's middle), not the interval
    return "pays" if (low + high) / 2 > 0 else "hurts"


def _summary():
    return {"far": {80: {"gain_ci_low": 0.027, "gain_ci_high": 0.073}},
            "near": {80: {"gain_ci_low": -0.047, "gain_ci_high": 0.041}}}


def test_03_q6_rejects_deciding_from_the_mean():
    s = _summary()
    for verdict, n_failed in ((_right_verdict, 0), (_mean_verdict, 1)):  # the hidden test catches it
        decisions = {k: verdict(s[k][80]["gain_ci_low"], s[k][80]["gain_ci_high"]) for k in s}
        ns = {"summary": s, "SIZES": (30, 80), "verdict": verdict, "decisions": decisions}
        assert _failures("03_fine_tuning", "q6", ns) == n_failed, verdict.__name__


def _sweep():
    return [{"n_blocks": 0, "val_accuracy": 0.650}, {"n_blocks": 1, "val_accuracy": 0.680},
            {"n_blocks": 2, "val_accuracy": 0.615}, {"n_blocks": 3, "val_accuracy": 0.685}]


def test_03b_q2_rejects_taking_the_best_block_count():
    def fewest(sweep, tolerance):
        best = max(r["val_accuracy"] for r in sweep)
        return min(r["n_blocks"] for r in sweep if r["val_accuracy"] >= best - tolerance)

    def best_one(sweep, tolerance):  # the common mistake: ignore the tolerance, take the top score
        return max(sweep, key=lambda r: r["val_accuracy"])["n_blocks"]

    tolerance = math.sqrt(0.685 * 0.315 / 200)
    assert _failures("03b_fine_tuning_explorations", "q2",
                     {"sweep": _sweep(), "tolerance": tolerance, "choose_blocks": fewest}) == 0
    assert _failures("03b_fine_tuning_explorations", "q2",
                     {"sweep": _sweep(), "tolerance": tolerance, "choose_blocks": best_one}) == 2


def test_03b_q1_rejects_an_unpaired_or_mean_only_verdict():
    import course_lib as cl

    schedules = {"warm-up + cosine": [0.660, 0.667, 0.680], "constant": [0.714, 0.700, 0.668]}
    effect = cl.stats.paired_interval(schedules["warm-up + cosine"], schedules["constant"])
    ns = {"cl": cl, "np": np, "schedules": schedules, "schedule_effect": effect,
          "schedule_verdict": _right_verdict(effect["low"], effect["high"]).replace("pays", "helps")}
    assert _failures("03b_fine_tuning_explorations", "q1", ns) == 0
    wrong = dict(ns, schedule_verdict="hurts")  # the mean is negative, but the interval contains zero
    assert _failures("03b_fine_tuning_explorations", "q1", wrong) == 2
    reversed_order = dict(ns, schedule_effect=cl.stats.paired_interval(schedules["constant"],
                                                                      schedules["warm-up + cosine"]))
    assert _failures("03b_fine_tuning_explorations", "q1", reversed_order) >= 1


@pytest.mark.slow
def test_03_q1b_rejects_answering_from_the_trainable_flag():
    import keras

    probe = np.random.default_rng(0).normal(5.0, 3.0, size=(64, 8)).astype("float32")
    source = json.loads((ROOT / "notebooks/source/03_fine_tuning.ipynb").read_text())["cells"]
    answer = next("".join(c["source"]) for c in source if "def small_model" in "".join(c["source"]))
    ns = {"keras": keras, "np": np, "probe": probe}
    exec(answer.split("probe_labels =")[0], ns)  # the solution and small_model, without the printing loop
    ns["probe_labels"] = (probe[:, 0] > 5).astype("int32")

    def flag_only(model, layer, x, y):  # the common mistake: answer from trainable, measure nothing
        return bool(layer.trainable)

    def uses_batch_statistics(trainable, training, x, make_layer=keras.layers.BatchNormalization):
        layer = make_layer()
        layer.trainable = trainable
        out = np.asarray(layer(x, training=training))
        return bool(abs(out.mean()) < 0.1 and abs(out.std() - 1.0) < 0.1)

    def flags_only(trainable, training, x, make_layer=None):  # the truth table recited, x and the layer ignored
        return bool(trainable and training)

    ns["uses_batch_statistics"] = uses_batch_statistics
    tests = [code for _, code in question_tests("03_fine_tuning", "q1")]
    hidden = [t for t in tests if "hidden: true" in t]
    exec(hidden[0], dict(ns))  # the notebook's measuring solution passes
    with pytest.raises(AssertionError):
        exec(hidden[0], dict(ns, fit_moves_statistics=flag_only))
    for public in (t for t in tests if "hidden: true" not in t and "uses_batch_statistics" in t):
        exec(public, dict(ns, uses_batch_statistics=flags_only))  # the flags pass the public table ...
    with pytest.raises(AssertionError, match="TF1 convention"):  # ... but not a layer of another convention
        exec(hidden[0], dict(ns, uses_batch_statistics=flags_only))


def _q3_namespace():
    """What 03's q3 tests read: a small untrained MobileNetV2, the augmentation and preprocessing layers."""
    import keras

    import course_lib as cl

    backbone = cl.backbones.load("mobilenet_v2", 32, weights=None)
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal")], name="augment")
    preprocess = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")
    pixels = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    stub = types.SimpleNamespace(data=types.SimpleNamespace(to_numpy=lambda split, size: (pixels, None)),
                                 recipe=cl.recipe)
    return {"cl": stub, "np": np, "keras": keras, "backbone": backbone, "augment": augment,
            "preprocess": preprocess, "IMAGE_SIZE": 32, "ds": types.SimpleNamespace(num_classes=5),
            "splits": {"val": types.SimpleNamespace(subset=lambda idx: None)}}


def _builder(keras, head):
    def build_model(backbone, num_classes, augment, preprocess):
        backbone.trainable = False
        inputs = keras.Input((32, 32, 3))
        x = backbone(preprocess(augment(inputs)), training=False)
        for layer in head(num_classes):
            x = layer(x)
        return keras.Model(inputs, x)
    return build_model


@pytest.mark.slow
def test_03_q3_rejects_a_head_without_softmax_and_dropout():
    import keras

    ns = _q3_namespace()

    def recipe_head(k):
        return [keras.layers.Dropout(0.2), keras.layers.Dense(k, activation="softmax")]

    def bare_head(k):  # the common mistake: logits out, no dropout
        return [keras.layers.Dense(k)]

    answers = {}
    for name, head in (("right", recipe_head), ("bare", bare_head)):
        build = _builder(keras, head)
        keras.utils.set_random_seed(0)
        answers[name] = dict(ns, build_model=build, model=build(ns["backbone"], 5, ns["augment"], ns["preprocess"]))
    failed = check("03_fine_tuning", "q3", answers["right"], answers["bare"])
    assert "probabilities" in failed["public"][0]


@pytest.mark.slow
def test_03_q5_rejects_stage_2_without_early_stopping():
    import keras
    import tensorflow as tf

    import course_lib as cl

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 2, 32)
    val_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)], name="base")
    answers = {}
    for name, early in (("right", True), ("none", False)):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.models.clone_model(base), keras.layers.Dense(2, activation="softmax")])
        backbone = model.layers[0]
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=1, verbose=0)
        below_cut = cl.recipe.snapshot(backbone)
        ns = {"cl": cl, "np": np, "keras": keras, "model": model, "backbone": backbone, "below_cut": below_cut,
              "done": 1, "FINE_TUNE_EPOCHS": 1, "PATIENCE": 3, "val_ds": val_ds}
        stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=3, restore_best_weights=True)
        history2 = model.fit(x, y, validation_data=val_ds, epochs=2, initial_epoch=1, verbose=0,
                             callbacks=[stop] if early else [])  # one epoch: best equals last either way
        answers[name] = dict(ns, history2=history2, **({"stop": stop} if early else {}))
    failed = check("03_fine_tuning", "q5", answers["right"], answers["none"])
    assert "stop should be the early-stopping callback" in failed["public"][0]


@pytest.mark.slow
def test_03_q2_rejects_counting_the_batchnorm_layers():
    import keras

    import course_lib as cl

    def count(backbone, name, n, skip_bn=True):
        blocks = cl.backbones.blocks(backbone, name)
        return int(sum(layer.count_params() for _, layers in blocks[len(blocks) - n:] for layer in layers
                       if not (skip_bn and isinstance(layer, keras.layers.BatchNormalization))))

    backbone = cl.backbones.load("mobilenet_v2", 32, weights=None)
    report = types.SimpleNamespace(trainable_after=cl.finetune.expected_trainable(backbone, "mobilenet_v2", 2))
    ns = {"cl": cl, "keras": keras, "backbone": backbone, "BACKBONE": "mobilenet_v2", "N_BLOCKS": 2, "report": report}
    with_bn = lambda b, name, n: count(b, name, n, skip_bn=False)  # noqa: E731  the frozen BatchNorm counted too
    check("03_fine_tuning", "q2", dict(ns, count_trainable=count), dict(ns, count_trainable=with_bn))


def _q4_answers(unfreeze):
    """03 q4's namespace after `start_fine_tuning` written with the given unfreeze-and-recompile step."""
    import keras

    import course_lib as cl

    backbone = cl.backbones.load("mobilenet_v2", 32, weights=None)
    model = cl.recipe.build(backbone, 3, preprocess="mobilenet_v2")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    lr, epochs, steps = 1e-4, 6, 7
    schedule = keras.optimizers.schedules.CosineDecay(lr / 100, steps * (epochs - 1), warmup_target=lr,
                                                      warmup_steps=steps)

    def start_fine_tuning(model, first_block, learning_rate):
        unfreeze(keras, cl.recipe.find_backbone(model), first_block)
        if unfreeze is not _no_recompile:
            model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])

    start_fine_tuning(model, "block_13", schedule)
    return {"cl": cl, "keras": keras, "backbone": backbone, "model": model, "BACKBONE": "mobilenet_v2",
            "FIRST_BLOCK": "block_13", "FINE_TUNE_LR": lr, "FINE_TUNE_EPOCHS": epochs, "math": math,
            "splits": {"train": list(range(200))}, "BATCH": 32,  # ceil(200 / 32) = 7 steps per epoch
            "schedule": schedule, "start_fine_tuning": start_fine_tuning}


def _recipe_unfreeze(keras, inner, first_block):
    inner.trainable = True
    first = next(i for i, layer in enumerate(inner.layers) if layer.name.startswith(first_block + "_"))
    for i, layer in enumerate(inner.layers):
        if i < first or isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _bn_trainable(keras, inner, first_block):  # the common mistake: BatchNormalization unfrozen with its block
    inner.trainable = True
    first = next(i for i, layer in enumerate(inner.layers) if layer.name.startswith(first_block + "_"))
    for layer in inner.layers[:first]:
        layer.trainable = False


def _no_recompile(keras, inner, first_block):  # the other one: the flags change, but fit() keeps the old optimizer
    _recipe_unfreeze(keras, inner, first_block)


@pytest.mark.slow
def test_03_q4_rejects_trainable_batchnorm_and_a_missing_recompile():
    right = _q4_answers(_recipe_unfreeze)
    for wrong, says in ((_bn_trainable, "trainable parameters"), (_no_recompile, "recompile")):
        failed = check("03_fine_tuning", "q4", right, _q4_answers(wrong), kinds=("public",))
        assert says in " ".join(failed["public"]), failed


@pytest.mark.slow
def test_03b_q3_rejects_comparing_two_batches_of_one_pass(tmp_path):
    import tensorflow as tf

    import course_lib as cl
    from tests.conftest import write_image

    for i in range(8):
        write_image(tmp_path / f"c{i % 2}" / f"{i}.png", size=(32, 32), seed=i)
    few = cl.data.load_folder(tmp_path)
    augment = cl.recipe.augmentation(seed=0)
    images = cl.data.to_numpy(few, 32)[0].astype("float32")
    wrong_pipe = (tf.data.Dataset.from_tensor_slices(images).batch(4)
                  .map(lambda x: augment(x, training=True)).cache().map(lambda x: (x, tf.zeros(4))))
    right_pipe = cl.data.pipeline(few, 32, batch_size=4, augment=augment)

    def complete_passes(dataset):
        firsts = [[np.asarray(x) for x, _ in dataset][0] for _ in range(2)]
        return bool(np.array_equal(*firsts))

    def within_one_pass(dataset):  # the common mistake: two batches of one pass (different images) compared
        batches = [np.asarray(x) for x, _ in dataset]
        return bool(np.array_equal(batches[0], batches[1]))

    ns = {"cl": cl, "np": np, "few": few, "augment": augment, "wrong": wrong_pipe, "right": right_pipe}
    failed = check("03b_fine_tuning_explorations", "q3", dict(ns, views_repeat=complete_passes),
                   dict(ns, views_repeat=within_one_pass), kinds=("public",))
    assert "replays its first epoch" in failed["public"][0]
