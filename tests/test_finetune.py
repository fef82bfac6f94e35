"""Fine-tuning helpers: unfreezing the top blocks, the cut for cached activations, two-stage records."""

import keras
import numpy as np
import pytest

from course_lib import backbones, features, finetune

from .conftest import tiny_top_problem

BN = keras.layers.BatchNormalization


def _size(w) -> int:
    return int(np.prod(w.shape))


@pytest.fixture(scope="module")
def mnv2():
    return backbones.load("mobilenet_v2", 32, weights=None)


def test_unfreeze_top_makes_only_the_top_blocks_trainable_and_keeps_batchnorm_frozen(mnv2):
    finetune.freeze(mnv2)
    report = finetune.unfreeze_top(mnv2, "mobilenet_v2", 2)
    assert report.blocks == ["block_16", "Conv_1"]
    assert report.trainable_before == 0
    top_layers = [layer for _, layers in backbones.blocks(mnv2, "mobilenet_v2")[-2:] for layer in layers]
    convs = [layer for layer in top_layers if not isinstance(layer, BN)]
    bns = [layer for layer in top_layers if isinstance(layer, BN)]
    assert bns and sorted(report.frozen_batchnorm) == sorted(layer.name for layer in bns)
    assert sorted(report.layers) == sorted(layer.name for layer in convs)
    assert report.trainable_after == sum(_size(w) for layer in convs for w in layer.weights)
    assert report.trainable_after == finetune.expected_trainable(mnv2, "mobilenet_v2", 2)
    trainable = {layer.name for layer in mnv2.layers if layer.trainable and layer.weights}
    assert trainable == {layer.name for layer in convs}, "nothing below the top blocks, no BN"
    assert "block_16" in report.summary() and f"{report.trainable_after:,}" in str(report)


def test_unfreeze_top_can_leave_batchnorm_trainable_and_zero_blocks_freezes_all(mnv2):
    with_bn = finetune.unfreeze_top(mnv2, "mobilenet_v2", 2, keep_batchnorm_frozen=False)
    assert with_bn.frozen_batchnorm == []
    assert any(name.endswith("_BN") for name in with_bn.layers)
    assert with_bn.trainable_after > finetune.expected_trainable(mnv2, "mobilenet_v2", 2)
    none = finetune.unfreeze_top(mnv2, "mobilenet_v2", 0)
    assert none.blocks == [] and none.trainable_before == with_bn.trainable_after
    assert none.trainable_after == 0 and mnv2.trainable_weights == []


@pytest.mark.parametrize("bad", [19, 100, -1, 1.5, True])
def test_too_many_or_invalid_blocks_fail_clearly(mnv2, bad):
    with pytest.raises(ValueError) as info:
        finetune.unfreeze_top(mnv2, "mobilenet_v2", bad)
    text = str(info.value)
    assert f"Received: n_blocks={bad!r}" in text
    assert "mobilenet_v2 has 18 blocks" in text and "block_16, Conv_1" in text
    assert "Allowed: an integer from 0 to 18, or a block name" in text


def test_a_block_name_that_does_not_exist_fails_clearly(mnv2):
    with pytest.raises(ValueError, match=r"mobilenet_v2 has no block named '2'. Received: '2'. Allowed: one of "
                                         r"expanded_conv, block_1, .* or a number of top blocks from 0 to 18"):
        finetune.unfreeze_top(mnv2, "mobilenet_v2", "2")


def test_efficientnet_counts_grow_block_by_block():
    model = backbones.load("efficientnet_b0", 32, weights=None)
    blocks = backbones.blocks(model, "efficientnet_b0")
    previous = 0
    for n in range(1, 4):
        report = finetune.unfreeze_top(model, "efficientnet_b0", n)
        new_block = blocks[-n][1]
        added = sum(_size(w) for layer in new_block if not isinstance(layer, BN) for w in layer.weights)
        assert report.trainable_after == previous + added, n
        assert report.blocks == [b for b, _ in blocks[-n:]]
        previous = report.trainable_after
    assert report.blocks[-1] == "top_conv"
    with pytest.raises(ValueError, match=r"efficientnet_b0 has 17 blocks .*block7a, top_conv"):
        finetune.unfreeze_top(model, "efficientnet_b0", 18)


def test_frozen_batchnorm_runs_in_inference_mode_and_only_unfrozen_weights_move(mnv2):
    finetune.freeze(mnv2)
    _, top = finetune.split_at_block(mnv2, "mobilenet_v2", 2)
    head = features.make_head(1280, 2, dropout=0.0)
    model = finetune.classifier(top, head, batchnorm_inference=False)  # trainable=False alone must do it
    finetune.unfreeze_top(mnv2, "mobilenet_v2", 1)
    before = {w.path: w.numpy().copy() for w in mnv2.weights}
    features.compile_classifier(model, 1e-2)
    x = np.random.default_rng(0).normal(0, 1, (8,) + top.input_shape[1:]).astype("float32")
    model.fit(x, np.arange(8) % 2, epochs=1, batch_size=8, verbose=0)
    moved = {w.path for w in mnv2.weights if not np.array_equal(before[w.path], w.numpy())}
    assert moved == {w.path for w in mnv2.get_layer("Conv_1").weights}, moved


def test_frozen_batchnorm_keeps_its_moving_statistics(mnv2):
    _, top = finetune.split_at_block(mnv2, "mobilenet_v2", 1)
    head = features.make_head(1280, 2, dropout=0.0)
    model = finetune.classifier(top, head, batchnorm_inference=False)
    x = np.random.default_rng(1).normal(0, 1, (8,) + top.input_shape[1:]).astype("float32")
    for keep, should_move in ((True, False), (False, True)):
        finetune.unfreeze_top(mnv2, "mobilenet_v2", 1, keep_batchnorm_frozen=keep)
        stats = mnv2.get_layer("Conv_1_bn").moving_variance.numpy().copy()
        features.compile_classifier(model, 1e-3)
        model.fit(x, np.arange(8) % 2, epochs=1, batch_size=8, verbose=0)
        changed = not np.array_equal(stats, mnv2.get_layer("Conv_1_bn").moving_variance.numpy())
        assert changed == should_move, f"keep_batchnorm_frozen={keep}"


@pytest.mark.parametrize("name,size", [("mobilenet_v2", 32), ("efficientnet_b0", 32), ("resnet50", 32)])
def test_split_at_block_composes_back_to_the_backbone(name, size):
    model = backbones.load(name, size, weights=None)
    bottom, top = finetune.split_at_block(model, name, 3)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    whole = np.asarray(model(x, training=False))
    assert np.allclose(np.asarray(top(bottom(x, training=False), training=False)), whole, atol=1e-4)
    first = backbones.blocks(model, name)[-3][1][0]
    assert top.get_layer(first.name) is first, "the top shares the backbone's layers"
    assert bottom.output_shape == top.input_shape


def test_split_at_block_needs_a_block(mnv2):
    with pytest.raises(ValueError, match="Received: n_blocks=0"):
        finetune.split_at_block(mnv2, "mobilenet_v2", 0)
    with pytest.raises(ValueError, match="mobilenet_v2 has 18 blocks"):
        finetune.split_at_block(mnv2, "mobilenet_v2", 40)


def test_join_histories_numbers_epochs_continuously():
    first = {"accuracy": [0.5, 0.6, 0.7], "val_accuracy": [0.4, 0.5, 0.55], "loss": [1, 0.9, 0.8]}
    second = {"accuracy": [0.8, 0.9], "val_accuracy": [0.6, 0.65]}
    record = finetune.join_histories(first, second, seconds=[1.0, 0.5, 0.6, 2.0, 1.5])
    assert record.epochs == [1, 2, 3, 4, 5]
    assert record.history == {"accuracy": [0.5, 0.6, 0.7, 0.8, 0.9],
                              "val_accuracy": [0.4, 0.5, 0.55, 0.6, 0.65]}
    assert record.stage_starts == [1, 4] and record.boundary == 3
    assert record.stage_names == ["train head", "fine-tune"]
    assert record.final() == 0.65 and record.at_boundary() == 0.55
    assert record.stage_seconds(0) == 0.5 and record.stage_seconds() == 1.5
    with pytest.raises(ValueError, match="Received: 2 times for 5 epochs"):
        finetune.join_histories(first, second, seconds=[1, 2])
    with pytest.raises(ValueError, match="non-empty history"):
        finetune.join_histories(first, {})


def test_sweep_blocks_starts_each_n_from_the_same_weights(mnv2):
    model, data = tiny_top_problem(mnv2)
    # without dropout (whose seed state set_weights does not restore), a run depends on its start weights only
    model = finetune.classifier(model.layers[1], features.make_head(1280, 2, dropout=0.0))
    val = (data[0], 1 - data[1])  # not the training set: its accuracy is not the training accuracy
    start = model.get_weights()
    results = finetune.sweep_blocks(model, mnv2, name="mobilenet_v2", n_values=[0, 1, 2], train=data, val=val, epochs=2,
                                    batch_size=8)
    assert [r["n_blocks"] for r in results] == [0, 1, 2]
    head_params = 1280 * 2 + 2
    for r in results:
        assert r["trainable_params"] == head_params + finetune.expected_trainable(
            mnv2, "mobilenet_v2", r["n_blocks"])
        assert r["seconds_per_epoch"] > 0
    assert all(np.array_equal(a, b) for a, b in zip(start, model.get_weights()))
    assert mnv2.trainable_weights == []
    # each N's val_accuracy is its own run's, after its last epoch, on `val`: fine-tuning 1 block alone,
    # from the same start with the same seed, ends there (the runs are reproducible)
    history, _, _ = finetune.fine_tune(model, mnv2, name="mobilenet_v2", n_blocks=1, train=data, val=val,
                                       epochs=2, batch_size=8)
    model.set_weights(start)
    finetune.freeze(mnv2)
    assert results[1]["val_accuracy"] == history.history["val_accuracy"][-1]
    assert history.history["val_accuracy"] != history.history["accuracy"]


def test_labels_that_are_not_whole_numbers_fail_before_any_epoch(mnv2, monkeypatch):
    model, (x, _) = tiny_top_problem(mnv2)
    model = finetune.classifier(model.layers[1], features.make_head(1280, 3))  # 3 outputs
    monkeypatch.setattr(model, "fit", lambda *a, **k: pytest.fail("fit ran before the labels were checked"))
    y = np.arange(16) % 3
    for bad, match in ((y + 0.5, r"labels of dtype float64, e\.g\. 0\.5\."),
                       (np.array(["a", "b"] * 8), r"labels of dtype <U1, e\.g\. 'a'\.")):
        with pytest.raises(ValueError, match=match):
            finetune.fine_tune(model, mnv2, name="mobilenet_v2", n_blocks=1, train=(x, bad), val=None, epochs=1)
    finetune.check_labels(model, (x, y.astype("float32")))  # whole numbers in range are fine
    finetune.check_labels(model, None), finetune.check_labels(model, finetune.as_dataset((x, y)))  # not checked
    assert mnv2.trainable_weights == [], "nothing was unfrozen"


def test_a_name_that_does_not_match_the_model_says_what_it_holds(mnv2):
    with pytest.raises(ValueError, match=r"has no blocks of 'mobilenet': its layer names do not match .* "
                                         r"Received: name='mobilenet', a model whose first layers are "):
        finetune.unfreeze_top(mnv2, "mobilenet", 2)
