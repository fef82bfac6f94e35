"""Transferability scores on hand-computed cases and on properties; crossover; decision guide."""

import math

import numpy as np
import pytest

from course_lib import transferability as T


def _separable(n=300, classes=4, noise_dims=20, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    signal = 3.0 * np.eye(classes)[y] + 0.5 * rng.normal(size=(n, classes))
    return np.concatenate([signal, rng.normal(size=(n, noise_dims))], axis=1), y


def _brute_force_logme(f, y):
    """Maximise the exact log marginal likelihood log N(t | 0, F F^T / alpha + I / beta) numerically."""
    from scipy import optimize

    n = len(f)
    gram = f @ f.T
    out = []
    for c in np.unique(y):
        t = (y == c).astype(float)

        def neg(params):
            a, b = np.exp(params)
            cov = gram / a + np.eye(n) / b
            _, logdet = np.linalg.slogdet(cov)
            return 0.5 * (logdet + t @ np.linalg.solve(cov, t) + n * math.log(2 * math.pi))

        best = optimize.minimize(neg, x0=[0.0, 0.0], method="Nelder-Mead",
                                 options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000})
        out.append(-best.fun / n)
    return float(np.mean(out))


@pytest.mark.parametrize("n,d", [(25, 4), (12, 30)])
def test_logme_equals_the_maximised_evidence(n, d):
    rng = np.random.default_rng(1)
    f = rng.normal(size=(n, d))
    y = np.arange(n) % 3
    f[:, 0] += 2.0 * y  # some signal, so the optimum is interior
    assert T.logme(f, y) == pytest.approx(_brute_force_logme(f, y), abs=1e-4)


def test_logme_prefers_features_that_separate_the_labels():
    f, y = _separable()
    rng = np.random.default_rng(2)
    assert T.logme(f, y) > T.logme(rng.normal(size=f.shape), y) + 0.3
    # the same holds with fewer images than feature dimensions
    f_small, y_small = _separable(n=40, noise_dims=100)
    assert T.logme(f_small, y_small) > T.logme(rng.normal(size=f_small.shape), y_small)


def test_leep_hand_computed_cases():
    assert T.leep(np.eye(2), [0, 1]) == pytest.approx(0.0)
    assert T.leep(np.full((2, 2), 0.5), [0, 1]) == pytest.approx(math.log(0.5))
    # theta rows: [.8 .2], [.2 .8], [.5 .5]; labels 0, 1, 1 (worked out by hand):
    # P(y,z) = [[.8, .2], [.7, 1.3]] / 3;  P(z) = [1.5, 1.5] / 3
    # P(y|z) = [[.8/1.5, .2/1.5], [.7/1.5, 1.3/1.5]]
    # EEP = [.8*.8+.2*.2, .2*.7+.8*1.3, .5*.7+.5*1.3] / 1.5 = [.68, 1.18, 1.0] / 1.5
    theta = np.array([[0.8, 0.2], [0.2, 0.8], [0.5, 0.5]])
    expected = np.mean(np.log(np.array([0.68, 1.18, 1.0]) / 1.5))
    assert T.leep(theta, [0, 1, 1]) == pytest.approx(expected)


def test_leep_of_a_perfect_source_predictor_is_the_maximum():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 200)
    perm = rng.permutation(6)[:4]  # target class c is source class perm[c]: naming does not matter
    perfect = np.eye(6)[perm[y]]
    assert T.leep(perfect, y) == pytest.approx(0.0)
    for mix in (0.1, 0.5, 1.0):
        noisy = (1 - mix) * perfect + mix * rng.dirichlet(np.ones(6), size=len(y))
        assert T.leep(noisy, y) < T.leep(perfect, y)
    constant = np.full((len(y), 6), 1 / 6)  # an uninformative source: LEEP = mean log prior
    prior = np.bincount(y) / len(y)
    assert T.leep(constant, y) == pytest.approx(np.mean(np.log(prior[y])))


def test_leep_rejects_logits():
    with pytest.raises(ValueError, match="probability distribution"):
        T.leep(np.array([[2.0, -1.0], [0.5, 0.1]]), [0, 1])


def test_h_score_hand_computed_cases():
    y = np.array([0, 0, 1, 1])
    # f = 0,0,2,2: var(f) = 1, var(E[f|y]) = 1
    assert T.h_score(np.array([[0.0], [0.0], [2.0], [2.0]]), y, shrinkage=None) == pytest.approx(1.0)
    # f = 0,1,2,3: var(f) = 1.25, class means 0.5 and 2.5, var(E[f|y]) = 1
    assert T.h_score(np.array([[0.0], [1.0], [2.0], [3.0]]), y, shrinkage=None) == pytest.approx(0.8)


def test_regularised_h_score_hand_computed_case():
    # f = (-1, +-1), (1, +-1): cov(f) = I, so shrinkage changes nothing in it; E[f|y] = (-1, 0), (1, 0)
    # gives cov(E[f|y]) = diag(1, 0). Regularised with a = 0.5: tr(I^-1 (1 - 0.5) diag(1, 0)) = 0.5
    # (Ibrahim et al., 2022); the shrunk covariance alone, without the (1 - a) factor, would give 1.0.
    f = np.array([[-1.0, 1.0], [-1.0, -1.0], [1.0, 1.0], [1.0, -1.0]])
    y = np.array([0, 0, 1, 1])
    assert T.h_score(f, y, shrinkage=None) == pytest.approx(1.0)
    assert T.h_score(f, y, shrinkage=0.5) == pytest.approx(0.5)
    assert T.h_score(f, y, shrinkage=1.0) == pytest.approx(0.0)


def test_auto_h_score_uses_the_ledoit_wolf_shrinkage_in_both_covariances():
    from sklearn.covariance import LedoitWolf

    f, y = _separable(classes=3)
    f = np.random.default_rng(7).normal(size=(len(f), 40)) * 0.5 + np.pad(f, ((0, 0), (0, 40 - f.shape[1])))
    alpha = LedoitWolf(assume_centered=True).fit(f - f.mean(0)).shrinkage_
    assert 0 < alpha < 1
    assert T.h_score(f, y) == pytest.approx(T.h_score(f, y, shrinkage=alpha), rel=1e-6)


def test_h_score_is_bounded_and_prefers_separating_features():
    f, y = _separable(classes=4)
    rng = np.random.default_rng(4)
    plain = T.h_score(f, y, shrinkage=None)
    assert 0 <= plain <= 3 + 1e-9  # at most (number of classes - 1)
    assert plain > 2.5
    assert T.h_score(f, y) > T.h_score(rng.normal(size=f.shape), y) + 1.0
    with pytest.raises(ValueError, match="shrinkage"):
        T.h_score(f, y, shrinkage=2.0)


def test_knn_probe_hand_computed_case():
    # unit vectors at 0, 10, 20 degrees (class 0), 90, 100 degrees (class 1) and one class-1 point at
    # 28 degrees. Leave-one-out 1-NN: 28's nearest is 20 (class 0) and 20's nearest is 28 (class 1),
    # the four others are right: 4/6.
    angles = np.radians([0, 10, 20, 90, 100, 28])
    f = np.stack([np.cos(angles), np.sin(angles)], 1)
    y = np.array([0, 0, 0, 1, 1, 1])
    assert T.knn_probe(f, y, k=1) == pytest.approx(4 / 6)
    # k=3: 20 -> {28, 10, 0} votes 0 (right); 28 -> {20, 10, 0} votes 0 (wrong); 90 -> {100, 28, 20}: 1, 1, 0
    # -> class 1 (right); 100 -> {90, 28, 20} -> 1 (right); 0 and 10 right: 5/6
    assert T.knn_probe(f, y, k=3) == pytest.approx(5 / 6)
    assert T.knn_probe(f * 7.0, y, k=1) == pytest.approx(4 / 6)  # cosine: scale does not matter
    with pytest.raises(ValueError, match="k must be"):
        T.knn_probe(f, y, k=6)


def test_scores_and_linear_probe():
    f, y = _separable()
    out = T.scores(f, y)
    assert set(out) == {"logme", "h_score", "knn"}
    assert out["knn"] > 0.95
    probs = np.eye(4)[y]
    assert set(T.scores(f, y, source_probs=probs)) == set(T.SCORES)
    assert T.linear_probe((f[:200], y[:200]), (f[200:], y[200:])) > 0.95
    with pytest.raises(ValueError, match="differ in size"):
        T.linear_probe((f, y), (f[:, :3], y))


def test_inputs_are_checked_with_clear_errors():
    with pytest.raises(ValueError, match="2-D"):
        T.logme(np.zeros(5), np.zeros(5, int))
    with pytest.raises(ValueError, match="one non-negative integer"):
        T.logme(np.zeros((4, 2)), np.array([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        T.h_score(np.ones((4, 2)), np.zeros(4, int))


def test_crossover_hand_computed():
    # gap (scratch - transfer) = -0.2, -0.1, +0.1: crosses halfway between 10 and 100 on a log scale
    assert T.crossover([1, 10, 100], [0.5, 0.8, 0.9], [0.3, 0.7, 1.0]) == pytest.approx(math.sqrt(1000))
    assert T.crossover([1, 10, 100], [0.5, 0.8, 0.9], [0.3, 0.7, 0.85]) is None  # transfer ahead at the end
    assert T.crossover([1, 10], [0.2, 0.3], [0.4, 0.5]) == 1.0  # scratch ahead everywhere
    # ahead, behind, ahead: the last crossing counts
    assert T.crossover([1, 10, 100], [0.5, 0.8, 0.8], [0.6, 0.7, 0.9]) == pytest.approx(math.sqrt(1000))
    with pytest.raises(ValueError, match="increasing"):
        T.crossover([10, 1], [0.1, 0.2], [0.2, 0.3])


def test_recommend_follows_the_decision_guide():
    assert T.recommend(3, 1.9, crossover_per_class=10) == "freeze"
    assert T.recommend(300, 1.9, crossover_per_class=10) == "scratch"  # far source, past the crossover
    assert T.recommend(300, 0.8, crossover_per_class=10) == "fine-tune"  # near source, past the crossover
    assert T.recommend(50, 0.8) == "freeze" and T.recommend(150, 0.8) == "fine-tune"  # default threshold: 100
    with pytest.raises(ValueError, match="proxy A-distance"):
        T.recommend(10, 2.5)
    with pytest.raises(ValueError, match="per_class"):
        T.recommend(0, 1.0)


def test_rank_correlations_per_score():
    table = {"a": {"logme": 3.0, "knn": 0.1}, "b": {"logme": 2.0, "knn": 0.3}, "c": {"logme": 1.0, "knn": 0.2},
             "d": {"logme": 0.0, "knn": 0.0, "leep": -1.0}}
    accuracy = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    rho = T.rank_correlations(table, accuracy)
    assert rho["logme"] == pytest.approx(1.0)
    assert rho["knn"] == pytest.approx(0.4)  # ranks 2,4,3,1 against 4,3,2,1: 1 - 6*6/(4*15)
    assert "leep" not in rho  # fewer than 3 candidates have it


def test_learning_curve_uses_nested_subsets():
    labels = np.repeat(np.arange(3), 8)
    seen = []

    def fit_and_score(idx, seed):
        seen.append((seed, set(idx.tolist())))
        return len(idx) / 100

    acc = T.learning_curve(fit_and_score, labels, [1, 4], seeds=[0, 1])
    assert acc.shape == (2, 2) and np.allclose(acc, [[0.03, 0.12], [0.03, 0.12]])
    assert seen[0][1] <= seen[1][1] and seen[2][1] <= seen[3][1]  # nested within a seed
    assert seen[0][1] != seen[2][1] or seen[1][1] != seen[3][1]  # seeds draw different images
    with pytest.raises(ValueError, match="n_per_class=9"):
        T.learning_curve(fit_and_score, labels, [1, 9], seeds=[0])
    assert len(seen) == 4, "a size larger than a class fails before any training"


def test_truncate_gives_a_frozen_pooled_extractor():
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.Conv2D(5, 3, name="c2")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    cut = T.truncate(model, "c1")
    assert cut.output_shape == (None, 4) and not cut.trainable
    assert cut(np.ones((2, 8, 8, 3), np.float32)).shape == (2, 4)
    with pytest.raises(ValueError, match="Unknown layer"):
        T.truncate(model, "c9")


@pytest.mark.parametrize("k", [2, 4])
def test_probe_dense_weights_predict_like_the_probe(k):
    rng = np.random.default_rng(k)
    y = np.arange(90) % k
    x = rng.normal(size=(90, 6)) * np.arange(1, 7) + 5
    x[:, :2] += 2 * y[:, None]
    probe = T.fit_linear_probe((x, y))
    kernel, bias = T.probe_dense_weights(probe, k + 1)  # one class the probe never saw
    z = x @ kernel.astype("float64") + bias
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert kernel.shape == (6, k + 1) and bias.shape == (k + 1,)
    assert np.array_equal(p.argmax(1), probe.predict(x))
    assert np.allclose(p[:, :k], probe.predict_proba(x), atol=1e-5) and p[:, k].max() < 1e-6


def test_linear_probe_is_the_score_of_fit_linear_probe():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = rng.normal(size=(60, 5)) + y[:, None]
    assert T.linear_probe((x, y), (x[:30], y[:30])) == float(np.mean(T.fit_linear_probe((x, y)).predict(x[:30]) == y[:30]))
