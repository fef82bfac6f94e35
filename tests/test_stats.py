"""course_lib.stats: paired means with 95% intervals, and the noise of a paired accuracy difference."""

import math

import numpy as np
import pytest

from course_lib import stats


def test_mean_interval_matches_student_t():
    # three seeds +1.9, +1.1, +8.1 points (issue 27): t(0.975, 2) = 4.303
    got = stats.mean_interval([0.019, 0.011, 0.081])
    sd = np.std([0.019, 0.011, 0.081], ddof=1)
    assert got["mean"] == pytest.approx(0.037)
    assert got["high"] - got["mean"] == pytest.approx(4.3027 * sd / math.sqrt(3), rel=1e-4)
    assert got["low"] < 0 < got["high"], "three noisy seeds cannot tell +3.7 points from zero"


def test_interval_narrows_with_more_seeds_and_holds_its_level():
    rng = np.random.default_rng(0)
    covered = [stats.mean_interval(rng.normal(0.03, 0.02, 5)) for _ in range(2000)]
    rate = np.mean([c["low"] <= 0.03 <= c["high"] for c in covered])
    assert 0.93 < rate < 0.97, f"a 95% interval should cover the true mean about 95% of the time; got {rate:.3f}"
    wide = stats.mean_interval(rng.normal(0.03, 0.02, 3))
    narrow = stats.mean_interval(rng.normal(0.03, 0.02, 30))
    assert narrow["high"] - narrow["low"] < wide["high"] - wide["low"]


def test_one_value_has_no_interval_and_bad_input_is_explained():
    one = stats.mean_interval([0.05])
    assert one["low"] == -math.inf and one["high"] == math.inf
    with pytest.raises(ValueError, match="Received"):
        stats.mean_interval([])
    with pytest.raises(ValueError, match="Received"):
        stats.mean_interval([0.1, float("nan")])
    with pytest.raises(ValueError, match="same"):
        stats.paired_interval([0.1, 0.2], [0.1])


def test_paired_interval_cancels_what_both_share():
    shared = np.array([0.50, 0.70, 0.60, 0.80])  # seed effects both methods share
    a, b = shared + 0.02, shared
    got = stats.paired_interval(a, b)
    assert got["mean"] == pytest.approx(0.02) and got["std"] == pytest.approx(0.0, abs=1e-12)
    unpaired = stats.mean_interval(a)["std"]
    assert unpaired > 0.05, "the unpaired spread is the seeds' spread, far larger than the difference's"


def test_paired_accuracy_gain_rests_on_disagreements():
    a = np.array([1, 1, 1, 0, 1, 0, 1, 1, 0, 1], bool)
    b = np.array([1, 1, 0, 0, 1, 0, 1, 0, 0, 1], bool)
    got = stats.paired_accuracy_gain(a, b)
    assert got["gain"] == pytest.approx(0.2) and got["a_only"] == 2 and got["b_only"] == 0
    d = a.astype(float) - b.astype(float)
    assert got["se"] == pytest.approx(d.std(ddof=1) / math.sqrt(10))
    same = stats.paired_accuracy_gain(a, a)
    assert same["gain"] == 0 and same["se"] == 0
    with pytest.raises(ValueError, match="same validation images"):
        stats.paired_accuracy_gain(a, b[:5])
