"""Verification error rates from genuine and impostor score arrays.

Conventions
-----------
Scores are similarities (higher = more similar). A comparison is *accepted* at
threshold ``t`` when ``score >= t``; so, for ``G`` genuine and ``I`` impostor scores::

    FMR(t)  = #{impostor >= t} / I      (false match rate)
    FNMR(t) = #{genuine  <  t} / G      (false non-match rate)

Both rates are step functions that only change at observed scores, so every
achievable operating point is reached with ``t`` equal to one of the distinct
observed scores, or ``t = +inf`` (reject everything: FMR 0, FNMR 1). All functions
here evaluate exactly those thresholds; there is no interpolation.

The equal error rate follows FVC2000 (Maio et al., "FVC2000: Fingerprint
Verification Competition", IEEE TPAMI 24(3), 2002, section 4)::

    t1 = max{t : FNMR(t) <= FMR(t)},   t2 = min{t : FNMR(t) >= FMR(t)}
    [EER_low, EER_high] = [FNMR(t1), FMR(t1)]  if FNMR(t1) + FMR(t1) <= FMR(t2) + FNMR(t2)
                          [FMR(t2), FNMR(t2)]  otherwise
    EER = (EER_low + EER_high) / 2

``FMR100`` is the lowest FNMR at FMR <= 1%, ``FMR1000`` at FMR <= 0.1%,
``FMR10000`` at FMR <= 0.01%, ``ZeroFMR`` the lowest FNMR at FMR = 0 and
``ZeroFNMR`` the lowest FMR at FNMR = 0 (FVC2002 definitions). With ``I``
impostor scores, FMR <= 1/I*k can only be resolved down to 1/I: with 45 impostors
FMR100 is in fact ZeroFMR.

All functions are pure and thread-safe; memory O(G + I).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import invalid

__all__ = [
    "ErrorCurves",
    "Metrics",
    "error_curves",
    "eer",
    "eer_interval",
    "fnmr_at_fmr",
    "zero_fmr",
    "zero_fnmr",
    "det_points",
    "roc_points",
    "compute_metrics",
    "check_scores",
    "check_labels",
    "split_scores",
]


def check_scores(scores: object, name: str) -> np.ndarray:
    """Validate a 1-d array of finite real scores and return it as float64.

    Raises
    ------
    InvalidInputError
        Not array-like of real numbers, not 1-d, empty, or containing NaN/inf;
        the message names ``name``.
    """
    try:
        arr = np.asarray(scores)
    except Exception as exc:  # ragged lists and other non-arrays
        raise invalid(name, "a 1-d array of scores", type(scores).__name__) from exc
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise invalid(f"{name}.dtype", "integer or floating scores", arr.dtype)
    if arr.ndim != 1:
        raise invalid(f"{name}.shape", "a 1-d array", arr.shape)
    if arr.size == 0:
        raise invalid(name, "at least one score", "an empty array")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise invalid(name, "finite scores (no NaN or infinity)", f"{arr[first]} at index {first}")
    return arr


def check_labels(labels: object, name: str, size: int | None = None) -> np.ndarray:
    """Validate a 1-d array of 0/1 labels (1 genuine / mated, 0 impostor) and return it as bool.

    Parameters
    ----------
    labels : array_like of int or bool, shape (n,)
    name : str
        Argument name used in error messages.
    size : int, optional
        Required length (that of the matching score array).

    Raises
    ------
    InvalidInputError
        Not 1-d, wrong length, or a value other than 0/1 (``True``/``False``).
    """
    try:
        arr = np.asarray(labels)
    except Exception as exc:
        raise invalid(name, "a 1-d array of 0/1 labels", type(labels).__name__) from exc
    if arr.ndim != 1:
        raise invalid(f"{name}.shape", "a 1-d array", arr.shape)
    if size is not None and arr.size != size:
        raise invalid(f"{name}.shape", f"({size},) like the scores", arr.shape)
    if arr.dtype == bool:
        return arr.copy()
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise invalid(f"{name}.dtype", "0/1 integers or booleans", arr.dtype)
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise invalid(name, "0 (impostor) or 1 (genuine)", f"{arr[first].item()!r} at index {first}")
    return arr.astype(bool)


def split_scores(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Split one score array into ``(genuine, impostor)`` by 0/1 labels.

    Parameters
    ----------
    scores : array_like of float, shape (n,)
    labels : array_like of {0, 1} or bool, shape (n,)
        1 marks a genuine (mated) comparison, 0 an impostor one.

    Returns
    -------
    genuine, impostor : ndarray of float64
        Possibly empty: the metric functions reject an empty side, naming it.
    """
    s = check_scores(scores, "scores")
    lab = check_labels(labels, "labels", s.size)
    return s[lab], s[~lab]


@dataclass(frozen=True)
class ErrorCurves:
    """FMR and FNMR at every distinct threshold.

    Attributes
    ----------
    thresholds : ndarray of float64, shape (k,)
        Increasing: the distinct observed scores followed by ``+inf``.
    fmr, fnmr : ndarray of float64, shape (k,)
        Rates at each threshold; ``fmr`` non-increasing, ``fnmr`` non-decreasing.
    """

    thresholds: np.ndarray
    fmr: np.ndarray
    fnmr: np.ndarray


def error_curves(genuine, impostor) -> ErrorCurves:
    """FMR(t) and FNMR(t) at every threshold where either can change.

    Parameters
    ----------
    genuine, impostor : array_like, shape (G,) and (I,)
        Similarity scores of mated and non-mated comparisons.

    Examples
    --------
    >>> c = error_curves([3, 4], [1, 3])
    >>> c.thresholds.tolist(), c.fmr.tolist(), c.fnmr.tolist()
    ([1.0, 3.0, 4.0, inf], [1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 1.0])
    """
    g = np.sort(check_scores(genuine, "genuine"))
    i = np.sort(check_scores(impostor, "impostor"))
    t = np.append(np.unique(np.concatenate([g, i])), np.inf)
    fmr = (i.size - np.searchsorted(i, t, side="left")) / i.size
    fnmr = np.searchsorted(g, t, side="left") / g.size
    return ErrorCurves(t, fmr, fnmr)


def weighted_error_curves(thresholds: np.ndarray, genuine_bins: np.ndarray, genuine_weights: np.ndarray,
                          impostor_bins: np.ndarray, impostor_weights: np.ndarray) -> ErrorCurves | None:
    """Error curves with a weight per comparison, over precomputed thresholds (bootstrap kernel).

    Parameters
    ----------
    thresholds : ndarray of float64, shape (k,)
        Increasing, ending with ``+inf`` (as :attr:`ErrorCurves.thresholds`).
    genuine_bins, impostor_bins : ndarray of intp, shape (G,) and (I,)
        Index of each score in ``thresholds`` (``np.searchsorted(thresholds, s)``).
    genuine_weights, impostor_weights : ndarray of float64, shape (G,) and (I,)
        Non-negative weights (a bootstrap replicate's multiplicities).

    Returns
    -------
    ErrorCurves, or None when either side has zero total weight.
    """
    k = thresholds.size
    wg = np.bincount(genuine_bins, weights=genuine_weights, minlength=k)
    wi = np.bincount(impostor_bins, weights=impostor_weights, minlength=k)
    tg, ti = wg.sum(), wi.sum()
    if tg <= 0 or ti <= 0:
        return None
    # FNMR(t_j): weight of genuine scores < t_j; FMR(t_j): weight of impostor scores >= t_j.
    fnmr = np.concatenate([[0.0], np.cumsum(wg)[:-1]]) / tg
    fmr = np.cumsum(wi[::-1])[::-1] / ti
    return ErrorCurves(thresholds, np.clip(fmr, 0.0, 1.0), np.clip(fnmr, 0.0, 1.0))


def eer_interval(genuine, impostor) -> tuple[float, float]:
    """The FVC2000 EER interval ``(EER_low, EER_high)`` (see the module docstring)."""
    return _eer_interval(error_curves(genuine, impostor))


def _eer_interval(c: ErrorCurves) -> tuple[float, float]:
    # FNMR <= FMR holds on a prefix of the thresholds (FNMR rises, FMR falls); at the
    # lowest score FNMR = 0 and at +inf FMR = 0, so both sets below are non-empty.
    k1 = int(np.flatnonzero(c.fnmr <= c.fmr)[-1])
    k2 = int(np.flatnonzero(c.fnmr >= c.fmr)[0])
    if c.fnmr[k1] + c.fmr[k1] <= c.fmr[k2] + c.fnmr[k2]:
        return float(c.fnmr[k1]), float(c.fmr[k1])
    return float(c.fmr[k2]), float(c.fnmr[k2])


def eer(genuine, impostor) -> float:
    """Equal error rate (fraction), FVC2000 definition: midpoint of the EER interval."""
    lo, hi = eer_interval(genuine, impostor)
    return (lo + hi) / 2


def fnmr_at_fmr(genuine, impostor, max_fmr: float) -> float:
    """Lowest FNMR over thresholds with FMR <= ``max_fmr`` (e.g. 0.01 for FMR100)."""
    return _fnmr_at_fmr(error_curves(genuine, impostor), _check_rate(max_fmr, "max_fmr"))


def _check_rate(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise invalid(name, "a rate in [0, 1]", value)
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise invalid(name, "a rate in [0, 1]", value)
    return v


def _fnmr_at_fmr(c: ErrorCurves, max_fmr: float) -> float:
    # Tiny tolerance so that FMR = 1/100 exactly counts as "<= 1%" despite float rounding.
    return float(c.fnmr[c.fmr <= max_fmr + 1e-12].min())


def zero_fmr(genuine, impostor) -> float:
    """Lowest FNMR at which no impostor is accepted."""
    return _fnmr_at_fmr(error_curves(genuine, impostor), 0.0)


def zero_fnmr(genuine, impostor) -> float:
    """Lowest FMR at which no genuine comparison is rejected."""
    c = error_curves(genuine, impostor)
    return float(c.fmr[c.fnmr == 0].min())


def det_points(genuine, impostor) -> tuple[np.ndarray, np.ndarray]:
    """Points of the DET curve: ``(fmr, fnmr)`` arrays, FMR decreasing (float64, shape (k,))."""
    c = error_curves(genuine, impostor)
    return c.fmr, c.fnmr


def roc_points(genuine, impostor) -> tuple[np.ndarray, np.ndarray]:
    """Points of the ROC curve: ``(fmr, tmr)`` with ``tmr = 1 - fnmr``, FMR increasing.

    Returns
    -------
    fmr, tmr : ndarray of float64, shape (k,)
        One point per distinct threshold (see :func:`error_curves`), from
        ``t = +inf`` (0, 0) to the lowest score (1, 1 - FNMR).

    Examples
    --------
    >>> fmr, tmr = roc_points([3, 4], [1, 3])
    >>> fmr.tolist(), tmr.tolist()
    ([0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0])
    """
    c = error_curves(genuine, impostor)
    return c.fmr[::-1].copy(), 1.0 - c.fnmr[::-1]


@dataclass(frozen=True)
class Metrics:
    """Summary error rates (fractions in [0, 1]) of one score set."""

    eer: float
    eer_low: float
    eer_high: float
    fmr100: float
    fmr1000: float
    fmr10000: float
    zerofmr: float
    zerofnmr: float
    n_genuine: int
    n_impostor: int

    def to_dict(self) -> dict:
        return asdict(self)


def compute_metrics(genuine, impostor) -> Metrics:
    """All summary rates at once (one sort of each array).

    Examples
    --------
    >>> m = compute_metrics([0.9, 0.8, 0.4], [0.1, 0.5, 0.2])
    >>> round(m.eer, 4), m.zerofmr
    (0.3333, 0.3333333333333333)
    """
    c = error_curves(genuine, impostor)
    lo, hi = _eer_interval(c)
    return Metrics(
        eer=(lo + hi) / 2,
        eer_low=lo,
        eer_high=hi,
        fmr100=_fnmr_at_fmr(c, 1e-2),
        fmr1000=_fnmr_at_fmr(c, 1e-3),
        fmr10000=_fnmr_at_fmr(c, 1e-4),
        zerofmr=_fnmr_at_fmr(c, 0.0),
        zerofnmr=float(c.fmr[c.fnmr == 0].min()),
        n_genuine=int(np.size(genuine)),
        n_impostor=int(np.size(impostor)),
    )
