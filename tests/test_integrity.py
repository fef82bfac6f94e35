"""course_lib.tools.integrity and the test-format reader of course_lib.tools.submission, in-process (no kernel)."""

import builtins

import numpy as np
import pytest

from course_lib import quiz
from course_lib.tools import integrity, submission


@pytest.fixture
def snap():
    taken = integrity.snapshot()
    integrity._SNAPSHOT.clear()  # take() works once per process, as in a grading kernel
    yield taken
    integrity.restore(taken)  # whatever a failing test left replaced
    integrity._SNAPSHOT.clear()


def test_a_replaced_numpy_function_builtin_and_course_function_are_found_and_put_back(snap):
    real = (np.allclose, builtins.all, quiz.correct)
    assert integrity.replaced(snap) == []
    np.allclose = lambda *a, **k: True
    builtins.all = lambda *a: True
    quiz.correct = lambda *a, **k: True
    assert integrity.replaced(snap) == ["builtins.all", "course_lib.quiz.correct", "numpy.allclose"]
    integrity.restore(snap)
    assert (np.allclose, builtins.all, quiz.correct) == real
    assert not np.allclose([1.0], [2.0]) and integrity.replaced(snap) == []


def test_a_replaced_class_attribute_is_found_and_an_added_name_is_left_alone(snap):
    import keras

    real = keras.Model.count_params
    keras.Model.count_params = lambda self: 0
    np.my_helper = 1  # added, not replaced: nothing a test relies on
    try:
        assert integrity.replaced(snap) == ["keras.Model.count_params"]
        integrity.restore(snap)
        assert keras.Model.count_params is real
    finally:
        del np.my_helper


def test_check_and_restore_compares_with_the_snapshot_taken(snap):
    integrity.take()
    np.mean = len
    assert integrity.check_and_restore() == ["numpy.mean"]
    assert integrity.check_and_restore() == []
    assert np.mean([1, 3]) == 2


def test_test_cases_convert_from_the_ok_format_and_expected_output_is_refused():
    assert submission.doctest_to_python(">>> x = 1\n>>> if x:\n...     assert x\n") == "x = 1\nif x:\n    assert x\n"
    with pytest.raises(ValueError, match="expects printed output"):
        submission.doctest_to_python(">>> x\n1\n")


def test_each_cell_belongs_to_the_exercise_checked_next():
    cells = [{"cell_type": "code", "source": s} for s in ("a = 1", 'grader.check("q1")', "b = 2",
                                                            "grader.check('q2')", "c = 3")]
    assert submission.question_of_cells(cells) == ["q1", "q1", "q2", "q2", None]


def test_a_swapped_function_code_and_tensorflow_lazy_loaders(snap):
    import tensorflow as tf

    real_code = quiz.correct.__code__
    quiz.correct.__code__ = (lambda quiz, notebook, number, expected: True).__code__
    assert integrity.replaced(snap) == ["course_lib.quiz.correct.__code__"]
    integrity.restore(snap)
    assert quiz.correct.__code__ is real_code
    _ = tf.keras.layers.Dense, tf.losses  # TF swaps its lazy loaders for the modules: not tampering
    assert integrity.replaced(snap) == []


def test_the_snapshot_is_taken_once(snap):
    integrity.take()
    with pytest.raises(RuntimeError, match="taken once"):
        integrity.take()


def test_require_pristine_raises_after_putting_the_originals_back(snap):
    integrity.take()
    np.allclose = lambda *a, **k: True
    with pytest.raises(integrity.TamperingError, match="numpy.allclose"):
        integrity.require_pristine()
    assert not np.allclose([1.0], [2.0])
    integrity.require_pristine()  # nothing replaced: no error
