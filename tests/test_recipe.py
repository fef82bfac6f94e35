"""cl.recipe: the end-to-end fine-tuning recipe of 03 and 06, on tiny random-weight models."""

import math

import keras
import numpy as np
import pytest

from course_lib import backbones, data, features, finetune, recipe, splits

from .conftest import tiny_top_problem, write_image

NAME = "mobilenet_v2"


@pytest.fixture(scope="module")
def tiny_backbone():
    return backbones.load(NAME, 32, weights=None)


def _folder(root, classes=("a", "b"), n=6):
    for c, cls in enumerate(classes):
        for i in range(n):
            write_image(root / cls / f"{i}.png", size=(32, 32), seed=10 * c + i)
    return root


def test_augmentation_is_random_in_training_and_a_no_op_at_inference():
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    aug = recipe.augmentation(seed=1)
    assert np.array_equal(np.asarray(aug(x, training=False)), x)
    assert not np.allclose(np.asarray(aug(x, training=True)), x)


def test_preprocessing_layers_match_the_backbones_own_preprocessing():
    x = np.array([[[[0.0, 127.5, 255.0]]]], "float32")
    for name in ("mobilenet_v2", "mobilenet"):
        got = np.asarray(recipe.preprocessing_layer(name)(x))
        assert np.allclose(got, backbones.get(name).preprocess_input(x.copy()))
    assert np.array_equal(np.asarray(recipe.preprocessing_layer("efficientnet_b0")(x)), x)
    with pytest.raises(ValueError, match="No built-in preprocessing layer for resnet50.*Allowed"):
        recipe.preprocessing_layer("resnet50")


def test_build_records_training_false_and_the_probe_sees_batchnorm_in_training_mode(tiny_backbone):
    import keras

    model = recipe.build(tiny_backbone, 3, preprocess=NAME, augment=recipe.augmentation(0))
    names = [layer.name for layer in model.layers]
    assert names.index("augment") < names.index(tiny_backbone.name)
    assert model.output_shape == (None, 3)
    assert recipe.find_backbone(model) is tiny_backbone
    assert recipe.training_argument(model) is False
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    inputs = keras.Input((32, 32, 3))
    bare = keras.Model(inputs, keras.layers.Dense(3)(tiny_backbone(inputs)))  # no training=False
    assert recipe.training_argument(bare) is None
    finetune.unfreeze_top(tiny_backbone, NAME, 3, keep_batchnorm_frozen=False)
    stats = [w.numpy().copy() for w in tiny_backbone.non_trainable_weights]
    moving = recipe.batchnorm_updates_in_training(bare, x)
    assert set(moving) == {"block_15_expand_BN", "block_15_depthwise_BN", "block_15_project_BN",
                           "block_16_expand_BN", "block_16_depthwise_BN", "block_16_project_BN", "Conv_1_bn"}
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(stats, tiny_backbone.non_trainable_weights)), \
        "the probe restores the statistics"
    finetune.unfreeze_top(tiny_backbone, NAME, 3)  # BatchNormalization frozen: inference mode
    assert recipe.batchnorm_updates_in_training(bare, x) == []
    assert recipe.batchnorm_updates_in_training(model, x) == []
    finetune.freeze(tiny_backbone)


def test_find_backbone_fails_clearly_without_one():
    import keras

    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"No backbone found in model .*Received layers: dense"):
        recipe.find_backbone(plain)


@pytest.mark.parametrize("bad", [0, -1e-4, float("nan"), float("inf"), "1e-4", True, None])
def test_a_learning_rate_must_be_a_positive_number(bad):
    with pytest.raises(ValueError, match=r"learning rate must be a positive number. Received: learning_rate="):
        features.check_learning_rate(bad)


def test_warmup_cosine_warms_up_then_decays():
    schedule = recipe.warmup_cosine(1e-4, total_steps=100, warmup_steps=10)
    features.check_learning_rate(schedule)  # schedules are accepted
    assert float(schedule(0)) == pytest.approx(1e-6)
    assert float(schedule(10)) == pytest.approx(1e-4)
    assert float(schedule(55)) == pytest.approx(0.5e-4, rel=1e-3)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-12)
    assert float(recipe.warmup_cosine(1e-3, total_steps=10, warmup_steps=0)(0)) == pytest.approx(1e-3)


def test_unfreeze_by_block_name_and_clear_errors(tiny_backbone):
    names = backbones.block_names(tiny_backbone, NAME)
    report = finetune.unfreeze_top(tiny_backbone, NAME, "block_15")
    assert report.blocks == names[names.index("block_15"):] and report.n_blocks == 3
    assert report.trainable_after == finetune.expected_trainable(tiny_backbone, NAME, 3)
    finetune.freeze(tiny_backbone)
    with pytest.raises(ValueError, match=r"has no block named 'block_99'. Received: 'block_99'. Allowed: one of "
                                         r"expanded_conv, block_1, .*Conv_1"):
        finetune.unfreeze_top(tiny_backbone, NAME, "block_99")
    with pytest.raises(ValueError, match=r"Allowed: an integer from 0 to 18"):
        finetune.unfreeze_top(tiny_backbone, NAME, 19)
    with pytest.raises(ValueError, match=r"has no blocks of 'efficientnet_b0': its layer names do not match"):
        finetune.unfreeze_top(tiny_backbone, "efficientnet_b0", 2)


@pytest.mark.slow
def test_fit_two_stages_moves_only_the_unfrozen_blocks(tmp_path, isolated_cache):
    ds = data.load_folder(_folder(tmp_path / "imgs"))
    parts = splits.split(ds, 0, train=4, val=1, test=1)
    net = backbones.load(NAME, 32, weights=None)
    model = recipe.build(net, 2, preprocess=NAME, augment=recipe.augmentation(0))
    before = recipe.snapshot(net)
    record = recipe.fit_two_stages(model, parts["train"], val=parts["val"], backbone_name=NAME, image_size=32,
                                   first_block="block_16", head_epochs=2, fine_tune_epochs=2, warmup_epochs=1,
                                   patience=5, batch_size=4)
    assert record.stage_starts == [1, 3] and record.num_epochs == 4
    assert record.unfreeze.blocks == ["block_16", "Conv_1"]
    moved = recipe.moved(before, net)
    allowed = {w.path for layer in net.layers if layer.name.startswith(("block_16", "Conv_1"))
               for w in layer.trainable_weights}
    assert moved and set(moved) <= allowed
    assert not any("moving_" in p for p in moved)
    x_val, y_val = data.to_numpy(parts["val"], 32)
    whole = float(np.mean(model.predict(x_val.astype("float32"), verbose=0).argmax(1) == y_val))
    assert recipe.accuracy(model, parts["val"], 32, batch_size=3) == pytest.approx(whole), \
        "batch by batch, the same accuracy as on the whole array"
    with pytest.raises(ValueError, match="learning rate must be a positive number"):
        recipe.fit_two_stages(model, parts["train"], val=parts["val"], backbone_name=NAME, image_size=32,
                              first_block=1, head_epochs=1, fine_tune_epochs=1, fine_tune_lr=0)
    with pytest.raises(ValueError, match=r"empty split .*0 images"):
        recipe.accuracy(model, parts["val"].subset([]), 32)


@pytest.mark.slow
def test_fit_two_stages_weights_the_loss_by_class(tmp_path, isolated_cache):
    """06's class-weight decision reaches both stages: a zero weight for every class leaves no loss to learn from."""
    ds = data.load_folder(_folder(tmp_path / "imgs"))
    parts = splits.split(ds, 0, train=4, val=1, test=1)

    def losses(class_weight):
        net = backbones.load(NAME, 32, weights=None)
        model = recipe.build(net, 2, preprocess=NAME, seed=0)
        record = recipe.fit_two_stages(model, parts["train"], val=parts["val"], backbone_name=NAME, image_size=32,
                                       first_block="block_16", head_epochs=1, fine_tune_epochs=1, patience=5,
                                       batch_size=4, class_weight=class_weight)
        return record.history["loss"]

    assert losses({0: 0.0, 1: 0.0}) == [0.0, 0.0]  # unweighted, a fresh head's loss is near log(2)


def _moved(before: dict, backbone) -> set:
    return {w.path for w in backbone.weights if not np.array_equal(before[w.path], w.numpy())}


def test_fit_two_stages_on_arrays_joins_the_stages_and_lowers_the_learning_rate(tiny_backbone):
    model, arrays = tiny_top_problem(tiny_backbone)
    start = recipe.snapshot(tiny_backbone)
    record = recipe.fit_two_stages(model, arrays, val=arrays, backbone_name=NAME, first_block=2, head_epochs=2,
                                   fine_tune_epochs=1, patience=5, batch_size=8)
    assert record.epochs == [1, 2, 3] and record.boundary == 2 and record.stage_starts == [1, 3]
    assert set(record.history) >= {"accuracy", "loss", "val_accuracy", "val_loss"}
    assert len(record.seconds) == 3 and all(s > 0 for s in record.seconds)
    assert record.unfreeze.blocks == ["block_16", "Conv_1"]
    assert recipe.learning_rate_now(model) == pytest.approx(1e-4), "stage 2 runs at fine_tune_lr"
    allowed = {w.path for _, layers in backbones.blocks(tiny_backbone, NAME)[-2:] for layer in layers
               if not isinstance(layer, keras.layers.BatchNormalization) for w in layer.weights}
    assert _moved(start, tiny_backbone) and _moved(start, tiny_backbone) <= allowed
    for w in tiny_backbone.weights:
        w.assign(start[w.path])


def test_fit_two_stages_is_reproducible_and_the_seed_matters(tiny_backbone):
    def run(seed):
        model, arrays = tiny_top_problem(tiny_backbone, seed=3)
        start = recipe.snapshot(tiny_backbone)
        history = recipe.fit_two_stages(model, arrays, val=arrays, backbone_name=NAME, first_block=1, head_epochs=2,
                                        fine_tune_epochs=1, patience=5, batch_size=4, seed=seed).history
        for w in tiny_backbone.weights:
            w.assign(start[w.path])
        return history

    first = run(5)
    assert run(5) == first
    assert run(6)["loss"] != first["loss"], "the seed shuffles the training data"


def test_the_cached_head_shortcut_is_the_same_training_as_the_frozen_model(tiny_backbone):
    """Stage 1 on the frozen top's features (03's grid) trains the head as stage 1 on the whole model would."""
    def run(shortcut):
        model, (x, y) = tiny_top_problem(tiny_backbone, seed=1)
        start = recipe.snapshot(tiny_backbone)
        head = None
        if shortcut:  # the same head: its weights and dropout seeds
            head = features.make_head(1280, 2)
            for mine, theirs in zip(head.variables, model.layers[-1].variables):
                mine.assign(theirs)
            feats = model.layers[1].predict(x, verbose=0)
            head = (head, (feats, y), (feats, y))
        record = recipe.fit_two_stages(model, (x, y), val=(x, y), backbone_name=NAME, first_block=1, head_epochs=2,
                                       fine_tune_epochs=1, fine_tune_lr=1e-12, patience=5, batch_size=4, head=head,
                                       seed=2)  # stage 2 barely moves: its validation scores the head it starts from
        for w in tiny_backbone.weights:
            w.assign(start[w.path])
        return record.history

    whole, cached = run(False), run(True)
    assert whole.keys() == cached.keys()
    for k in whole:  # stage 2's training metrics depend on the shuffle order, which differs
        same = whole[k] if k.startswith("val_") else whole[k][:2]
        assert cached[k][:len(same)] == pytest.approx(same, rel=1e-4, abs=1e-5), k
    model, arrays = tiny_top_problem(tiny_backbone)
    with pytest.raises(ValueError, match=r"head= must be the model's last layer's architecture.*Received: a head "
                                         r"with variables .*\(1280, 3\)"):
        recipe.fit_two_stages(model, arrays, val=arrays, backbone_name=NAME, first_block=1, head_epochs=1,
                              fine_tune_epochs=1, head=(features.make_head(1280, 3), arrays, arrays))


def test_reused_compiles_start_from_a_fresh_optimizer_and_recompile_when_training_changes():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden"),
                              keras.layers.Dense(2, activation="softmax", name="out")])
    x, y = np.random.default_rng(0).normal(size=(16, 4)).astype("float32"), np.arange(16) % 2
    kept = {}
    features.compile_classifier(model, 1e-3, reuse=kept)
    optimizer = model.optimizer
    model.fit(x, y, epochs=1, verbose=0)
    assert int(optimizer.iterations.numpy()) > 0
    features.compile_classifier(model, 1e-3, reuse=kept)
    assert model.optimizer is optimizer and int(optimizer.iterations.numpy()) == 0, "reused, its state reset"
    assert all(not np.any(v.numpy()) for v in optimizer.variables if v is not optimizer._learning_rate)
    features.compile_classifier(model, 1e-4, reuse=kept)
    assert model.optimizer is not optimizer, "another learning rate: compiled again"
    optimizer = model.optimizer
    model.get_layer("hidden").trainable = False
    features.compile_classifier(model, 1e-4, reuse=kept)
    assert model.optimizer is not optimizer, "other trainable weights: compiled again"
    schedule = recipe.warmup_cosine(1e-4, total_steps=20, warmup_steps=5)
    features.compile_classifier(model, schedule, reuse=kept)
    optimizer = model.optimizer
    features.compile_classifier(model, recipe.warmup_cosine(1e-4, total_steps=20, warmup_steps=5), reuse=kept)
    assert model.optimizer is optimizer, "the same schedule, made again: reused"
    features.compile_classifier(model, recipe.warmup_cosine(1e-4, total_steps=40, warmup_steps=5), reuse=kept)
    assert model.optimizer is not optimizer, "another schedule: compiled again"


def test_arrays_need_no_image_size_but_image_sets_do(tiny_backbone):
    model = recipe.build(tiny_backbone, 2, preprocess=NAME)
    two = data.ImageSet("two", ["a.png", "b.png"], np.array([0, 1]), ["a", "b"], "test")
    with pytest.raises(ValueError, match=r"got ImageSets but no image size\. Received: image_size=None\. Fix: pass "
                                         r"image_size="):
        recipe.fit_two_stages(model, two, val=two, backbone_name=NAME, first_block=1, head_epochs=1,
                              fine_tune_epochs=1)


def test_learning_rate_now_reads_a_schedule(tiny_backbone):
    model = recipe.build(tiny_backbone, 2, preprocess=NAME)
    features.compile_classifier(model, recipe.warmup_cosine(1e-4, total_steps=20, warmup_steps=5))
    assert recipe.learning_rate_now(model) == pytest.approx(1e-6)
    features.compile_classifier(model, 3e-4)
    assert recipe.learning_rate_now(model) == pytest.approx(3e-4)
    assert math.isclose(recipe.learning_rate_now(model), 3e-4, rel_tol=1e-6)


def test_labels_beyond_the_heads_outputs_fail_before_any_epoch(tiny_backbone, monkeypatch):
    model = recipe.build(tiny_backbone, 3, preprocess=NAME)
    monkeypatch.setattr(model, "fit", lambda *a, **k: pytest.fail("fit ran before the labels were checked"))
    five = data.ImageSet("five", [f"missing/{i}.png" for i in range(10)], np.arange(10) % 5,
                         list("abcde"), "test")  # never read: the check needs only the labels
    kwargs = dict(backbone_name=NAME, image_size=32, first_block=1, head_epochs=1, fine_tune_epochs=1)
    with pytest.raises(ValueError) as info:
        recipe.fit_two_stages(model, five, val=five.subset([0, 1]), **kwargs)
    text = str(info.value)
    assert text.startswith("The training labels do not fit model 'recipe': it has 3 outputs")
    assert "Received: labels from 0 (smallest) to 4 (largest)" in text
    assert "Fix: build the head with num_classes=5 (the dataset's number of classes), or check the labels" in text
    with pytest.raises(ValueError, match=r"The validation labels .* to 3 \(largest\)\. Fix: .*num_classes=5"):
        recipe.fit_two_stages(model, five.subset([0, 1, 2]), val=five.subset([3]), **kwargs)
