"""Shared plots: they draw what they are given, and refuse inputs that cannot be drawn."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from course_lib import backbones, plots


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def rgb(n, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3), dtype=np.uint8)


def titles_of(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_confusion_matrix_counts():
    cm = plots.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    assert cm.sum() == 6 and np.trace(cm) == 4
    assert plots.confusion_matrix([2], [1]).tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0]]  # size from the labels
    assert plots.confusion_matrix([], [], 2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="same length. Received: 2 and 3"):
        plots.confusion_matrix([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match=r"Labels must lie in 0..1 \(num_classes=2\). Received: labels from 0 to 5"):
        plots.confusion_matrix([0, 1], [0, 5], 2)  # never dropped silently


def test_plot_confusion_matrix_writes_counts_and_fractions():
    fig = plots.plot_confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], class_names=["cat", "dog"])
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["0", "1", "1", "2"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["cat", "dog"]
    fig = plots.plot_confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], class_names=["cat", "dog"], normalize=True)
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["0.00", "0.50", "0.50", "1.00"]


def test_misclassified_grid_titles_show_prediction_and_truth():
    y_true, y_pred = np.array([0, 1, 2, 1]), np.array([0, 2, 2, 0])
    probs = np.eye(3)[y_pred] * 0.9
    probs[3, 0] = 0.95  # the more confident mistake comes first
    fig = plots.misclassified_grid(rgb(4), y_true, y_pred=y_pred, class_names=["a", "b", "c"], probs=probs)
    assert titles_of(fig) == ["pred: a (0.95)\ntrue: b", "pred: c (0.90)\ntrue: b"]
    assert "2 of 2 misclassified" in fig._suptitle.get_text()
    limited = plots.misclassified_grid(rgb(4), y_true, y_pred=y_pred, class_names=["a", "b", "c"], max_images=1)
    assert titles_of(limited) == ["pred: c\ntrue: b"] and "1 of 2" in limited._suptitle.get_text()


def test_misclassified_grid_with_no_mistakes_says_so():
    fig = plots.misclassified_grid(rgb(2), [0, 1], y_pred=[0, 1], class_names=["a", "b"])
    assert fig.axes[0].texts[0].get_text() == "No misclassified images."


def test_image_grid_layout_and_checks():
    fig = plots.image_grid(rgb(7), [str(i) for i in range(7)], cols=3)
    assert len(fig.axes) == 9 and titles_of(fig) == [str(i) for i in range(7)]
    plots.image_grid(rgb(2, seed=1).astype("float32") / 255.0)  # floats in [0, 1] work too
    plots.image_grid(rgb(1)[..., :1])  # a single channel is drawn as grayscale
    with pytest.raises(ValueError, match="one title per image. Received: 1 titles for 2 images"):
        plots.image_grid(rgb(2), ["only one"])
    with pytest.raises(ValueError, match="at least one image"):
        plots.image_grid([])


def test_learning_curves_plot_one_run_train_and_val():
    run = {"accuracy": [0.5, 0.6, 0.7], "val_accuracy": [0.4, 0.5, 0.6]}
    ax = plots.learning_curves(run, title="head").axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["accuracy"].get_ydata()) == [0.5, 0.6, 0.7] and list(lines["val_accuracy"].get_xdata()) == [1, 2, 3]
    assert ax.get_title() == "head" and not ax.texts, "one stage: no stage marker"


def test_learning_curves_mark_where_fine_tuning_starts():
    from course_lib import finetune

    record = finetune.join_histories({"accuracy": [0.5, 0.6], "val_accuracy": [0.4, 0.5]},
                                     {"accuracy": [0.7], "val_accuracy": [0.6]})
    ax = plots.learning_curves(record).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["val_accuracy"].get_xdata()) == [1, 2, 3]
    assert list(lines["accuracy"].get_ydata()) == [0.5, 0.6, 0.7]
    assert any(list(line.get_xdata()) == [2.5, 2.5] for line in ax.get_lines()), "a marker between the stages"
    assert [t.get_text() for t in ax.texts] == ["fine-tuning starts"]
    later = finetune.join_histories({"val_accuracy": [0.4, 0.5, 0.55]}, {"val_accuracy": [0.6]})
    ax = plots.learning_curves({"a": record, "b": later}, title="compare").axes[0]
    assert [line.get_label() for line in ax.get_lines()][:2] == ["a", "b"] and ax.get_ylabel() == "val_accuracy"
    assert len(ax.texts) == 2 and ax.get_title() == "compare", "one marker per stage boundary"
    with pytest.raises(ValueError, match=r"history of 'b' has no 'val_loss'. Received keys: \['val_accuracy'\]"):
        plots.learning_curves({"a": {"val_loss": [1.0]}, "b": later}, metric="loss")


def test_learning_curves_one_stage_and_history_objects():
    class History:
        history = {"loss": [1.0, 0.5]}

    ax = plots.learning_curves(History(), metric="loss").axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["loss"] and not ax.texts
    with pytest.raises(ValueError, match="no 'accuracy'. Received keys: \\['loss'\\]"):
        plots.learning_curves(History())


def test_sweep_plot_lines_and_chance():
    fig = plots.sweep_plot([5, 10, 20], {"transfer": [0.5, 0.6, 0.7], "scratch": [0.3, 0.35, 0.5]},
                           chance=0.2)
    ax = fig.axes[0]
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert lines["transfer"] == [0.5, 0.6, 0.7] and lines["chance"] == [0.2, 0.2]
    assert ax.get_xscale() == "log"
    with pytest.raises(ValueError, match="'scratch' has 2 values for 3 x positions"):
        plots.sweep_plot([5, 10, 20], {"scratch": [0.3, 0.4]})


def test_feature_maps_one_row_per_depth_most_active_first():
    act = np.zeros((4, 4, 3))
    act[..., 1] = 5.0  # the most active channel is drawn first
    act[..., 2] = 1.0
    fig = plots.feature_maps({"early": act[None], "late": np.ones((2, 2, 8))}, channels=2)
    assert len(fig.axes) == 4
    assert fig.axes[0].get_title(loc="left") == "early  4x4x3"
    assert np.allclose(fig.axes[0].images[0].get_array(), 5.0)
    assert np.allclose(fig.axes[1].images[0].get_array(), 1.0)
    with pytest.raises(ValueError, match=r"Received: \(4, 4\)"):
        plots.feature_maps({"flat": np.zeros((4, 4))})


def test_block_parameters_bars_match_counts():
    model = backbones.load("mobilenet", 96, weights=None)
    blocks = backbones.blocks(model, "mobilenet")
    ax = plots.block_parameters(blocks).axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [backbones.param_count(layers) for _, layers in blocks]
    assert [t.get_text() for t in ax.get_xticklabels()] == [name for name, _ in blocks]


def test_block_sweep_plot_draws_accuracy_and_seconds_against_blocks():
    results = [{"n_blocks": n, "val_accuracy": 0.5 + n / 10, "seconds_per_epoch": 1 + n, "trainable_params": 1000 * n}
               for n in range(3)]
    fig = plots.block_sweep_plot(results, baseline=0.5)
    left, right = fig.axes
    assert list(left.get_xticks()) == [0, 1, 2] and len(right.patches) == 3
    assert any(list(line.get_ydata()) == [0.5, 0.5] for line in left.get_lines()), "the baseline is drawn"
