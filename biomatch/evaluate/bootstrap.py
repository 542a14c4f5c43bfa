"""Confidence intervals: bootstrap over subjects, and the "rule of 3" when no error is seen.

Why subjects
------------
Comparisons are not independent: the genuine pairs of one finger share its quality and
its impostor pairs share its pattern type, so resampling comparisons one by one
understates the uncertainty. Here a replicate draws ``S`` subjects with replacement from
the ``S`` observed ones (the "subsets bootstrap" of Bolle, Ratha & Pankanti, "Error
analysis of pattern recognition systems — the subsets bootstrap", CVIU 93(1), 2004) and
gives every comparison the product of the multiplicities of the subjects it involves:

- a genuine comparison of subject ``s``: weight ``c[s]``;
- an impostor comparison with one subject given (e.g. the probe's): ``c[a]``;
- an impostor comparison with both subjects given (shape ``(I, 2)``): ``c[a] * c[b]``,
  i.e. the impostor pairs among the drawn subjects, each copy of a subject paired with
  each copy of the other.

The rates of a replicate are computed from these weights exactly (no re-sorting: one
``bincount`` per side), and the interval is the percentile interval of the replicates.
Without subject labels the comparisons themselves are resampled (method
``"bootstrap-comparisons"``), which is reported as such.

Replicates are drawn from ``numpy.random.default_rng(seed)`` in a fixed order: the same
inputs and seed give the same interval on every platform numpy supports.

Rule of 3
---------
When no error is observed in ``n`` independent trials, the one-sided upper bound of the
error rate at confidence ``level`` is ``1 - (1 - level) ** (1 / n)`` (exact binomial),
about ``3 / n`` at 95% (Jovanovic & Levy, "A look at the rule of three", The American
Statistician 51(2), 1997; ISO/IEC 19795-1). A bootstrap cannot see variability that no
replicate contains, so an interval whose estimate is 0 is replaced by ``[0, bound]``
(method ``"rule-of-3"``). ``n`` is the number of comparisons, which assumes them
independent: with strongly correlated comparisons the bound is optimistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import invalid
from .metrics import ErrorCurves, _check_rate, _eer_interval, check_scores, weighted_error_curves

__all__ = ["Interval", "rule_of_three", "Resampler", "eer_ci", "fnmr_at_fmr_ci", "metrics_ci", "det_band", "DetBand"]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval (fractions or scores).

    Attributes
    ----------
    estimate, low, high : float
    level : float
        Two-sided confidence level (e.g. 0.95); one-sided for ``"rule-of-3"``.
    method : str
        ``"bootstrap-subjects"``, ``"bootstrap-comparisons"`` or ``"rule-of-3"``.
    n_boot : int
        Replicates used (those where both sides had a non-zero weight).
    seed : int or None
    """

    estimate: float
    low: float
    high: float
    level: float
    method: str
    n_boot: int
    seed: int | None

    def as_list(self) -> list[float]:
        return [self.low, self.high]

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level,
                "method": self.method, "n_boot": self.n_boot, "seed": self.seed}


def rule_of_three(n: int, level: float = 0.95) -> float:
    """Upper confidence bound of an error rate when 0 errors were seen in ``n`` trials.

    Exact binomial ``1 - (1 - level) ** (1 / n)``; about ``3 / n`` at ``level = 0.95``.

    Examples
    --------
    >>> round(rule_of_three(3000), 6), 3 / 3000
    (0.000998, 0.001)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise invalid("n", "a number of trials >= 1", n)
    lv = _check_level(level)
    return float(1.0 - (1.0 - lv) ** (1.0 / int(n)))


def _check_level(level: object) -> float:
    v = _check_rate(level, "level")
    if not 0.0 < v < 1.0:
        raise invalid("level", "a confidence level in (0, 1), e.g. 0.95", level)
    return v


def _codes(subjects, n: int, name: str, allow_pairs: bool) -> np.ndarray:
    try:
        a = np.asarray(subjects)
    except Exception as exc:
        raise invalid(name, "an array of subject ids", type(subjects).__name__) from exc
    shapes = f"({n},)" + (f" or ({n}, 2)" if allow_pairs else "")
    if not (a.shape == (n,) or (allow_pairs and a.shape == (n, 2))):
        raise invalid(f"{name}.shape", shapes + " like the scores", a.shape)
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise invalid(name, "subject ids (no NaN)", "NaN")
    return a.astype(str)


class Resampler:
    """Bootstrap weights for one (genuine, impostor) score set; see the module docstring.

    Parameters
    ----------
    genuine, impostor : array_like of float, shape (G,) and (I,)
        ``genuine`` may be None for impostor-only statistics (thresholds).
    genuine_subjects : array_like, shape (G,), optional
        Subject id of each genuine comparison (any hashable: str or int).
    impostor_subjects : array_like, shape (I,) or (I, 2), optional
        Subject id(s) of each impostor comparison. Give both or neither subject arrays.
    seed : int or None
        Seed of ``numpy.random.default_rng``; the default 0 makes results reproducible.

    Notes
    -----
    Not thread-safe (it owns a random generator); memory O(G + I + S).
    """

    def __init__(self, genuine, impostor, genuine_subjects=None, impostor_subjects=None, seed: int | None = 0):
        # genuine=None: impostor-only resampling (thresholds at a target FMR).
        self.genuine = np.empty(0) if genuine is None else check_scores(genuine, "genuine")
        self.impostor = check_scores(impostor, "impostor")
        if (genuine_subjects is None) != (impostor_subjects is None):
            raise invalid("genuine_subjects, impostor_subjects", "both or neither",
                          "only " + ("genuine_subjects" if impostor_subjects is None else "impostor_subjects"))
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise invalid("seed", "an int >= 0 or None", seed)
        self.seed = None if seed is None else int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.by_subject = genuine_subjects is not None
        if self.by_subject:
            gs = _codes(genuine_subjects, self.genuine.size, "genuine_subjects", False)
            ims = _codes(impostor_subjects, self.impostor.size, "impostor_subjects", True)
            names, inv = np.unique(np.concatenate([gs.ravel(), ims.ravel()]), return_inverse=True)
            self.n_subjects = names.size
            self._g_code = inv[:gs.size]
            self._i_code = inv[gs.size:].reshape(ims.shape)
        else:
            self.n_subjects = 0

    @property
    def method(self) -> str:
        return "bootstrap-subjects" if self.by_subject else "bootstrap-comparisons"

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """One replicate: ``(genuine_weights (G,), impostor_weights (I,))`` as float64."""
        if self.by_subject:
            c = np.bincount(self.rng.integers(0, self.n_subjects, self.n_subjects),
                            minlength=self.n_subjects).astype(np.float64)
            wg = c[self._g_code]
            wi = c[self._i_code] if self._i_code.ndim == 1 else c[self._i_code[:, 0]] * c[self._i_code[:, 1]]
            return wg, wi
        g, i = self.genuine.size, self.impostor.size
        return (np.bincount(self.rng.integers(0, g, g), minlength=g).astype(np.float64) if g else np.empty(0),
                np.bincount(self.rng.integers(0, i, i), minlength=i).astype(np.float64))

    def replicate_curves(self, n_boot: int):
        """Yield the weighted :class:`ErrorCurves` of ``n_boot`` replicates (degenerate ones skipped)."""
        if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
            raise invalid("n_boot", "an int >= 1", n_boot)
        t = np.append(np.unique(np.concatenate([self.genuine, self.impostor])), np.inf)
        gb = np.searchsorted(t, self.genuine)
        ib = np.searchsorted(t, self.impostor)
        for _ in range(int(n_boot)):
            wg, wi = self.weights()
            c = weighted_error_curves(t, gb, wg, ib, wi)
            if c is not None:
                yield c


def _first_at_or_below(fmr: np.ndarray, target: np.ndarray) -> np.ndarray:
    # fmr is non-increasing: the first index with fmr <= target (+ float tolerance).
    return np.searchsorted(-fmr, -(np.asarray(target) + 1e-12), side="left")


def _fnmr_at(c: ErrorCurves, target) -> np.ndarray:
    return c.fnmr[_first_at_or_below(c.fmr, target)]


def _interval(estimate: float, reps: list[float], level: float, method: str, seed, n_zero: int) -> Interval:
    if not reps:
        raise invalid("n_boot", "replicates with genuine and impostor comparisons",
                      "none: every replicate drew subjects of one side only")
    alpha = 1.0 - level
    lo, hi = np.quantile(np.asarray(reps), [alpha / 2, 1 - alpha / 2])
    if estimate == 0.0 and n_zero:
        return Interval(0.0, 0.0, max(float(hi), rule_of_three(n_zero, level)), level, "rule-of-3",
                        len(reps), seed)
    return Interval(float(estimate), float(lo), float(hi), level, method, len(reps), seed)


def _resampler(genuine, impostor, genuine_subjects, impostor_subjects, seed) -> Resampler:
    return Resampler(genuine, impostor, genuine_subjects, impostor_subjects, seed)


def bootstrap_statistic(resampler: Resampler, statistic: Callable[[ErrorCurves], float], n_boot: int) -> list[float]:
    """The statistic on each non-degenerate replicate, in order."""
    return [float(statistic(c)) for c in resampler.replicate_curves(n_boot)]


def eer_ci(genuine, impostor, *, genuine_subjects=None, impostor_subjects=None, n_boot: int = 1000,
           level: float = 0.95, seed: int | None = 0) -> Interval:
    """Confidence interval of the EER (FVC2000 definition), bootstrap over subjects.

    Parameters
    ----------
    genuine, impostor : array_like of float, shape (G,) and (I,)
    genuine_subjects, impostor_subjects : array_like, shapes (G,) and (I,) or (I, 2), optional
        Subject ids; without them comparisons are resampled (see the module docstring).
    n_boot : int
        Replicates (1000 gives percentiles stable to about +-10% of the width).
    level : float
        Two-sided confidence level.
    seed : int or None
        Same seed, same interval.

    Returns
    -------
    Interval
        When the EER is 0, ``[0, rule_of_three(min(G, I))]`` (method ``"rule-of-3"``).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> g, i = rng.normal(3, 1, 60), rng.normal(0, 1, 600)
    >>> ci = eer_ci(g, i, genuine_subjects=np.arange(60) % 20, impostor_subjects=np.arange(600) % 20, n_boot=200)
    >>> ci.low <= ci.estimate <= ci.high, ci.method
    (True, 'bootstrap-subjects')
    """
    lv = _check_level(level)
    r = _resampler(genuine, impostor, genuine_subjects, impostor_subjects, seed)
    from .metrics import error_curves

    lo, hi = _eer_interval(error_curves(r.genuine, r.impostor))
    reps = bootstrap_statistic(r, lambda c: sum(_eer_interval(c)) / 2, n_boot)
    return _interval((lo + hi) / 2, reps, lv, r.method, r.seed, min(r.genuine.size, r.impostor.size))


def fnmr_at_fmr_ci(genuine, impostor, max_fmr: float, *, genuine_subjects=None, impostor_subjects=None,
                   n_boot: int = 1000, level: float = 0.95, seed: int | None = 0) -> Interval:
    """Confidence interval of the FNMR at FMR <= ``max_fmr`` (e.g. 1e-3 for FMR1000).

    Each replicate picks its own threshold (the operating point is re-estimated, as
    it would be on a new development set). Parameters as :func:`eer_ci`. When the
    FNMR is 0, ``[0, rule_of_three(G)]``.
    """
    target = _check_rate(max_fmr, "max_fmr")
    lv = _check_level(level)
    r = _resampler(genuine, impostor, genuine_subjects, impostor_subjects, seed)
    from .metrics import error_curves

    est = float(_fnmr_at(error_curves(r.genuine, r.impostor), target))
    reps = bootstrap_statistic(r, lambda c: float(_fnmr_at(c, target)), n_boot)
    return _interval(est, reps, lv, r.method, r.seed, r.genuine.size)


def metrics_ci(genuine, impostor, *, genuine_subjects=None, impostor_subjects=None,
               fmrs=(("fmr100", 1e-2), ("fmr1000", 1e-3), ("fmr10000", 1e-4)), n_boot: int = 1000,
               level: float = 0.95, seed: int | None = 0) -> dict[str, Interval]:
    """Intervals of the EER and of the FNMR at several FMRs from one set of replicates.

    Same replicates (and so the same EER interval) as :func:`eer_ci` with the same seed;
    cheaper than one call per rate. ``fmrs`` holds ``(key, max_fmr)`` pairs.

    Returns
    -------
    dict
        ``"eer"`` and each key of ``fmrs`` -> :class:`Interval`.
    """
    lv = _check_level(level)
    targets = [(str(k), _check_rate(f, f"fmrs[{k!r}]")) for k, f in fmrs]
    r = _resampler(genuine, impostor, genuine_subjects, impostor_subjects, seed)
    from .metrics import error_curves

    c0 = error_curves(r.genuine, r.impostor)
    grid = np.array([f for _, f in targets])
    reps_eer, reps_fnmr = [], []
    for c in r.replicate_curves(n_boot):
        reps_eer.append(sum(_eer_interval(c)) / 2)
        reps_fnmr.append(_fnmr_at(c, grid))
    out = {"eer": _interval(sum(_eer_interval(c0)) / 2, reps_eer, lv, r.method, r.seed,
                            min(r.genuine.size, r.impostor.size))}
    est = _fnmr_at(c0, grid)
    cols = np.array(reps_fnmr).reshape(len(reps_fnmr), len(targets))
    for k, (key, _) in enumerate(targets):
        out[key] = _interval(float(est[k]), cols[:, k].tolist(), lv, r.method, r.seed, r.genuine.size)
    return out


@dataclass(frozen=True)
class DetBand:
    """Pointwise confidence band of a DET curve.

    Attributes
    ----------
    fmr : ndarray of float64, shape (k,)
        Grid of FMR values (increasing).
    fnmr, low, high : ndarray of float64, shape (k,)
        FNMR at FMR <= grid value: observed, and the band's bounds.
    level : float
    method : str
    """

    fmr: np.ndarray
    fnmr: np.ndarray
    low: np.ndarray
    high: np.ndarray
    level: float
    method: str


def det_band(genuine, impostor, *, genuine_subjects=None, impostor_subjects=None, fmr_grid=None,
             n_boot: int = 500, level: float = 0.95, seed: int | None = 0) -> DetBand:
    """Pointwise bootstrap band of FNMR at each FMR of ``fmr_grid`` (for DET plots).

    ``fmr_grid`` defaults to 60 log-spaced values from ``1/I`` to 1. Parameters as
    :func:`eer_ci`. The band is pointwise (each FMR separately), not simultaneous.
    """
    lv = _check_level(level)
    r = _resampler(genuine, impostor, genuine_subjects, impostor_subjects, seed)
    if fmr_grid is None:
        grid = np.logspace(math.log10(1.0 / r.impostor.size), 0.0, 60)
    else:
        grid = check_scores(fmr_grid, "fmr_grid")
        if (grid < 0).any() or (grid > 1).any():
            raise invalid("fmr_grid", "rates in [0, 1]", grid[(grid < 0) | (grid > 1)][0])
        grid = np.sort(grid)
    from .metrics import error_curves

    obs = _fnmr_at(error_curves(r.genuine, r.impostor), grid)
    reps = np.array([_fnmr_at(c, grid) for c in r.replicate_curves(n_boot)])
    if reps.size == 0:
        raise invalid("n_boot", "replicates with genuine and impostor comparisons", "none")
    alpha = 1.0 - lv
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2], axis=0)
    return DetBand(grid, obs, lo, hi, lv, r.method)
