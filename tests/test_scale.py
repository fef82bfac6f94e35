"""Tests for course_lib.scale: strategy choice, batch scaling, mixed precision, XLA option."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import course_lib as cl


@pytest.fixture
def float32_policy():
    """Restore Keras' global dtype policy after a test that changes it."""
    import keras

    yield
    keras.mixed_precision.set_global_policy("float32")


def tiny_backbone(size=16):
    """A two-convolution stand-in backbone (pooled output), built under the current policy."""
    import keras

    return keras.Sequential([keras.Input((size, size, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.Conv2D(6, 3, activation="relu"),
                             keras.layers.GlobalAveragePooling2D()], name="tiny_backbone")


@pytest.mark.parametrize("n_gpus, tpu, expected", [
    (0, False, "default"), (1, False, "default"), (2, False, "mirrored"),
    (8, False, "mirrored"), (0, True, "tpu"), (2, True, "tpu")])
def test_choose_picks_tpu_then_mirrored_then_default(n_gpus, tpu, expected):
    assert cl.scale.choose(n_gpus, tpu) == expected


def test_strategy_on_this_cpu_is_the_default_one_replica_strategy():
    import tensorflow as tf

    strat = cl.scale.strategy()
    assert strat is tf.distribute.get_strategy()
    assert strat.num_replicas_in_sync == 1
    assert cl.scale.strategy() is strat  # chosen once
    assert "1 replica" in cl.scale.describe(strat)


def test_global_batch_size_scales_with_replicas_and_rejects_bad_values():
    class FakeStrategy:
        num_replicas_in_sync = 8

    assert cl.scale.global_batch_size(32, FakeStrategy()) == 256
    assert cl.scale.global_batch_size(32) == 32  # one replica here
    for bad in (0, -4, 2.5, "32", True, np.int64(0), np.float32(32)):
        with pytest.raises(ValueError, match="per_replica"):
            cl.scale.global_batch_size(bad)


def test_numpy_integers_work_where_an_int_does():
    class FakeStrategy:
        num_replicas_in_sync = 2

    got = cl.scale.global_batch_size(np.int64(16), FakeStrategy())
    assert got == 32 and type(got) is int
    layer = cl.scale.output_layer(np.int32(5))
    assert layer.units == 5 and type(layer.units) is int
    for bad in (True, 1, 2.0, np.float64(3)):
        with pytest.raises(ValueError, match=r"integer num_classes >= 2. Received: num_classes=.*Fix: pass"):
            cl.scale.output_layer(bad)


@pytest.mark.parametrize("enabled, device, expected", [
    (None, "cpu", "float32"), (None, "gpu", "mixed_float16"), (None, "tpu", "mixed_bfloat16"),
    (False, "gpu", "float32"), (True, "gpu", "mixed_float16"), (True, "cpu", "mixed_float16")])
def test_policy_name_is_mixed_on_accelerators_and_off_on_cpu(enabled, device, expected):
    assert cl.scale.policy_name(enabled, device) == expected


def test_policy_name_rejects_unknown_device():
    with pytest.raises(ValueError, match="Received: device='npu'"):
        cl.scale.policy_name(None, "npu")


def test_use_mixed_precision_is_off_on_this_cpu_and_sets_the_global_policy(float32_policy):
    import keras

    assert cl.scale.use_mixed_precision(True) == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "mixed_float16"
    assert cl.scale.use_mixed_precision() == "float32"  # auto on a CPU machine
    assert keras.mixed_precision.global_policy().name == "float32"


def test_output_layer_stays_float32_under_mixed_policy(float32_policy):
    import keras

    cl.scale.use_mixed_precision(True)
    backbone = cl.backbones.load("mobilenet_v2", 32, weights=None)
    model = cl.scale.build_classifier(backbone, num_classes=3, dropout=0.0)
    plain = keras.layers.Dense(3)  # what a head without dtype="float32" would compute in
    assert plain.compute_dtype == "float16"
    assert backbone.layers[1].compute_dtype == "float16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model.get_layer("predictions").dtype_policy.name == "float32"
    preds = model.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
    assert preds.dtype == np.float32
    np.testing.assert_allclose(preds.sum(axis=1), 1.0, rtol=1e-5)


def test_build_classifier_applies_preprocess_and_pools_a_spatial_backbone():
    import keras

    spatial = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)], name="spatial")
    model = cl.scale.build_classifier(spatial, 4, preprocess=lambda x: x / 255.0)
    assert model.output_shape == (None, 4)
    assert [layer.name for layer in model.layers][-3:] == ["pool", "dropout", "predictions"]
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    seen = keras.Model(model.input, model.get_layer("pool").input).predict(images, verbose=0)  # what the backbone sees...
    np.testing.assert_allclose(seen, spatial.predict(images / 255.0, verbose=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(seen, spatial.predict(images, verbose=0)), "...is the preprocessed batch, not the raw pixels"
    with pytest.raises(ValueError, match="num_classes=1"):
        cl.scale.build_classifier(spatial, 1)


@pytest.fixture
def determinism_restored():
    """Put TF op determinism back as it was after a test that switches it."""
    before = cl.scale.op_determinism()
    yield
    cl.scale.op_determinism(before)


def test_compile_kwargs_turns_xla_off_on_cpu_and_validates(determinism_restored):
    assert cl.scale.compile_kwargs() == {"jit_compile": False}
    assert cl.scale.compile_kwargs("auto") == {"jit_compile": "auto"}
    with pytest.raises(ValueError, match="Received: 'yes'"):
        cl.scale.compile_kwargs("yes")


def test_asking_for_xla_turns_op_determinism_off_and_says_so(determinism_restored, capsys):
    cl.session.set_seed(0)  # what cl.setup does: determinism on
    assert cl.scale.op_determinism() is True
    assert cl.scale.compile_kwargs(False) == {"jit_compile": False}
    assert cl.scale.op_determinism() is True
    assert cl.scale.compile_kwargs(True) == {"jit_compile": True}
    assert cl.scale.op_determinism() is False
    assert "op determinism is now off" in capsys.readouterr().out


def test_xla_option_compiles_and_trains_like_the_plain_step(determinism_restored):
    import keras

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 32)
    cl.session.set_seed(0)  # determinism on, as after cl.setup: Keras would drop XLA without compile_kwargs
    results = {}
    for jit in (False, True):
        keras.utils.set_random_seed(3)
        model = cl.scale.build_classifier(tiny_backbone(), 3, dropout=0.0)
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy",
                      **cl.scale.compile_kwargs(jit))
        history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        results[jit] = history.history["loss"]
        assert model.jit_compile is jit
    np.testing.assert_allclose(results[True], results[False], rtol=1e-4)
    assert results[True][-1] < results[True][0]


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import course_lib as cl
    from tests.test_scale import tiny_backbone

    def train(strat, batch):
        cl.session.set_seed(7)
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(64, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 64)
        with strat.scope():
            model = cl.scale.build_classifier(tiny_backbone(), 3, dropout=0.0)
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy",
                          **cl.scale.compile_kwargs())
        loss = model.fit(x, y, batch_size=batch, epochs=3, shuffle=False, verbose=0).history["loss"]
        kinds = sorted({type(w.value).__name__ for w in model.weights})
        return [w.numpy() for w in model.weights], loss, kinds

    mirrored = cl.scale.strategy(devices=["/cpu:0", "/cpu:1"])
    batch = cl.scale.global_batch_size(8, mirrored)
    w2, loss2, kinds2 = train(mirrored, batch)
    w1, loss1, kinds1 = train(tf.distribute.OneDeviceStrategy("/cpu:0"), batch)
    print("RESULT " + json.dumps({
        "replicas": mirrored.num_replicas_in_sync, "describe": cl.scale.describe(mirrored),
        "batch": batch, "kinds2": kinds2, "kinds1": kinds1, "loss2": loss2, "loss1": loss1,
        "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(w2, w1)),
        "devices": [d.name for d in tf.config.list_logical_devices("CPU")]}))
""")


def run_two_device_script(path, text: str) -> dict:
    """Run a script (which sets up two logical CPUs) in a fresh process; return its RESULT json."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path.write_text(text)
    proc = subprocess.run([sys.executable, str(path)], cwd=root, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONPATH=root))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(lines[0][len("RESULT "):])


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    """Two replicas with per-replica batch 8 train like one device with batch 16."""
    result = run_two_device_script(tmp_path / "mirrored.py", MIRRORED_SCRIPT)
    assert result["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert result["replicas"] == 2
    assert result["describe"] == "MirroredStrategy with 2 replica(s)"
    assert result["batch"] == 16
    assert result["kinds2"] == ["MirroredVariable"] and result["kinds1"] != ["MirroredVariable"]
    assert result["loss2"][-1] < result["loss2"][0], "training under MirroredStrategy did not learn"
    np.testing.assert_allclose(result["loss2"], result["loss1"], rtol=1e-5)
    assert result["max_weight_diff"] < 1e-5, result


def test_course_heads_and_cnns_keep_float32_outputs_under_mixed_policy(float32_policy):
    """Every classifier the course's helpers build ends in a float32 softmax under mixed_float16."""
    cl.scale.use_mixed_precision(True)
    rng = np.random.default_rng(0)
    head, _ = cl.features.train_head((rng.normal(size=(24, 8)).astype("float32"), np.arange(24) % 3),
                                     epochs=1)
    cnn = cl.scratch.make_cnn(32, 4, augment=False)
    digits_cnn = cl.scratch.make_cnn(**cl.digits.CNN)
    for model in (head, cnn, digits_cnn):
        assert model.layers[-1].compute_dtype == "float32", model.name
        assert "float16" in {l.compute_dtype for l in model.layers[:-1]}, model.name  # the rest: float16
    preds = head.predict(rng.normal(size=(4, 8)).astype("float32"), verbose=0)
    assert preds.dtype == np.float32


HELPERS_SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import numpy as np
    import course_lib as cl
    from tests.test_scale import tiny_backbone

    tf.distribute.experimental_set_strategy(cl.scale.strategy(devices=["/cpu:0", "/cpu:1"]))  # what the auto
    assert cl.scale.strategy() is tf.distribute.get_strategy()  # choice (no GPU here: the current one) picks up
    rng = np.random.default_rng(0)
    kinds = lambda m: sorted({type(w.value).__name__ for w in m.weights})
    feats, labels = rng.normal(size=(48, 8)).astype("float32"), np.arange(48) % 3
    head, hist = cl.features.train_head((feats, labels), (feats, labels), epochs=2, batch_size=8)
    with cl.scale.scope():  # as cl.backbones.load does
        backbone = tiny_backbone()
    model = cl.finetune.classifier(backbone, cl.features.make_head(6, 3))
    cl.features.compile_classifier(model, 1e-2)
    images = rng.normal(size=(32, 16, 16, 3)).astype("float32")
    ft_hist, _ = cl.finetune._fit(model, (images, labels[:32]), val=None, epochs=2, initial_epoch=0,
                                  batch_size=8, seed=0, verbose=0)
    cnn, cnn_hist = cl.scratch.train((rng.integers(0, 255, (32, 16, 16, 3)), labels[:32]), epochs=1,
                                     batch_size=8, widths=(4, 8))
    digits_cnn, _ = cl.scratch.train((rng.integers(0, 255, (32, 28, 28)), labels[:32]), epochs=1, batch_size=8,
                                     model=cl.scratch.make_cnn(**dict(cl.digits.CNN, num_classes=3, widths=(4, 8))))
    print("RESULT " + json.dumps({
        "describe": cl.scale.describe(), "global_batch": cl.scale.global_batch_size(8),
        "head": kinds(head), "finetune": kinds(model), "scratch": kinds(cnn), "digits": kinds(digits_cnn),
        "head_loss": hist.history["loss"], "finetune_steps": len(ft_hist.history["loss"])}))
""")


@pytest.mark.slow
def test_course_helpers_build_and_train_under_the_chosen_strategy(tmp_path):
    """With a two-replica MirroredStrategy chosen, the course's helpers create mirrored variables and train."""
    result = run_two_device_script(tmp_path / "helpers.py", HELPERS_SCRIPT)
    assert result["describe"] == "MirroredStrategy with 2 replica(s)"
    assert result["global_batch"] == 16
    for helper in ("head", "finetune", "scratch", "digits"):
        assert result[helper] == ["MirroredVariable"], (helper, result[helper])
    assert np.isfinite(result["head_loss"]).all() and result["finetune_steps"] == 2
