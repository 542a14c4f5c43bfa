"""Normalisation and fusion: hand cases, optimality of the logistic fit, fused accuracy."""

import numpy as np
import pytest

from biomatch.errors import BiomatchError, InvalidInputError
from biomatch.evaluate import fusion as F
from biomatch.evaluate.metrics import eer


def test_normalizers_hand_computed():
    g, i = [4.0, 6.0], [0.0, 2.0]
    assert F.fit_normalizer(g, i, "minmax")([0.0, 6.0]).tolist() == [0.0, 1.0]
    z = F.fit_normalizer(g, i, "zscore")
    assert (z.loc, z.scale) == (3.0, pytest.approx(np.std([4, 6, 0, 2])))
    imp = F.fit_normalizer(g, i, "impostor")
    assert imp([1.0, 3.0]).tolist() == [0.0, 2.0]          # impostor mean 1, std 1
    t = F.fit_normalizer(g, i, "tanh")
    assert t([5.0]).tolist() == [0.5]                      # genuine mean maps to 0.5


def test_normalizer_refuses_no_spread():
    with pytest.raises(InvalidInputError, match="impostor: expected scores with a spread"):
        F.fit_normalizer([1.0, 2.0], [3.0, 3.0], "impostor")
    with pytest.raises(InvalidInputError, match="method: expected one of"):
        F.fit_normalizer([1.0], [0.0], "robust")


def synthetic(seed, n=800):
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 0], [n // 4, n - n // 4])
    s = np.column_stack([rng.normal(2.0 * y, 1.0), 10 + 5 * rng.normal(0.8 * y, 1.0), rng.normal(0, 1, n)])
    return s, y


def test_logistic_fit_is_optimal():
    s, y = synthetic(0)
    f = F.fit_fusion(s, y, l2=1e-3)
    z = np.column_stack([n(s[:, k]) for k, n in enumerate(f.normalizers)])
    x = np.column_stack([z, np.ones(len(y))])
    beta = np.array([*f.weights, f.bias])
    w = np.where(y == 1, 0.5 / (y == 1).sum(), 0.5 / (y == 0).sum())
    p = 1 / (1 + np.exp(-x @ beta))
    grad = x.T @ (w * (p - y)) + np.array([1e-3, 1e-3, 1e-3, 0.0]) * beta
    assert np.abs(grad).max() < 1e-8
    assert f.weights[0] > f.weights[1] > abs(f.weights[2])   # strong > weak > noise


def test_fusion_beats_each_input_on_new_data():
    s, y = synthetic(1)
    f = F.fit_fusion(s, y, names=["index", "thumb", "noise"])
    t, yt = synthetic(2)
    fused = f(t)
    singles = [eer(t[yt == 1, k], t[yt == 0, k]) for k in range(2)]
    assert eer(fused[yt == 1], fused[yt == 0]) < min(singles)
    baseline = F.fit_fusion(s, y, method="sum")
    assert baseline.weights == (1.0, 1.0, 1.0)


def test_fused_score_is_a_log_likelihood_ratio_for_gaussians():
    # Equal-variance Gaussians N(0,1) vs N(2,1): LLR(s) = 2s - 2, exactly linear.
    rng = np.random.default_rng(3)
    y = np.repeat([1, 0], [20000, 20000])
    s = rng.normal(2.0 * y, 1.0)[:, None]
    f = F.fit_fusion(s, y, normalize="zscore", l2=0.0)
    assert f(np.array([[0.0], [1.0], [2.0]])) == pytest.approx([-2.0, 0.0, 2.0], abs=0.08)


def test_separable_data_stays_finite_and_deterministic():
    s = np.array([[0.0], [1.0], [5.0], [6.0]])
    y = [0, 0, 1, 1]
    a, b = F.fit_fusion(s, y), F.fit_fusion(s, y)
    assert a == b and np.isfinite(a.weights).all() and a.weights[0] > 0


def test_json_round_trip():
    s, y = synthetic(4)
    f = F.fit_fusion(s, y, names=["a", "b", "c"])
    g = F.ScoreFusion.from_json(f.to_json())
    assert g == f and np.allclose(g(s), f(s))
    with pytest.raises(BiomatchError, match="fusion"):
        F.ScoreFusion.from_json("{}")


@pytest.mark.parametrize("scores, labels, fragment", [
    ([[1.0], [2.0]], [1, 1], "labels: expected both genuine (1) and impostor (0)"),
    ([[1.0], [float("nan")]], [1, 0], "scores[:, 0]: expected finite"),
    ([1.0, 2.0], [1, 0], "scores.shape: expected (n, m)"),
    ([[1.0], [2.0]], [1, 3], "labels: expected 0 (impostor) or 1 (genuine)"),
    ([[1.0], [2.0]], [1], "labels.shape"),
])
def test_bad_input(scores, labels, fragment):
    with pytest.raises(InvalidInputError) as exc:
        F.fit_fusion(scores, labels)
    assert fragment in str(exc.value)


def test_apply_checks_columns():
    f = F.fit_fusion([[1.0, 0.0], [2.0, 1.0], [0.0, 0.5], [3.0, 2.0]], [0, 1, 0, 1], names=["a", "b"])
    with pytest.raises(InvalidInputError, match=r"scores.shape: expected \(n, 2\) \(one column per input: a, b\)"):
        f([[1.0, 2.0, 3.0]])
