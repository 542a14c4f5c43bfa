"""Evidence: one comparison's score as decades of false-match rate, ``e(s) = -log10 FMR(s)``.

The single-finger false match rate is read from the matcher's calibration table
(:data:`biomatch.match.SCORE_AT_FMR`; for faces :data:`biomatch.face.match.COSINE_AT_FMR`),
looked up at call time because its scale may change, by piecewise-linear interpolation of
``log10 FMR`` against the score, extrapolated with the end slopes and clipped to
``[0, cap]``.  Under the impostor hypothesis ``P(e >= x) = 10**-x``, i.e.
``e ~ Exponential(ln 10)``: a finger and a face are terms of one law and fuse alike.
"""

from __future__ import annotations

import math

import numpy as np

from .. import match as _match
from ..errors import invalid
from ..face import match as _face_match
from .params import DecisionParams, calibration_table

__all__ = ["finger_evidence", "face_evidence", "calibrate"]


def _calibration(params: DecisionParams, face: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(scores ascending, decades) of the single-finger (or face) calibration table, read now."""
    name = "face_score_at_fmr" if face else "score_at_fmr"
    if getattr(params, name) is not None:
        table = getattr(params, name)
    elif face:
        table = _face_match.COSINE_AT_FMR
    else:
        table = _match.SCORE_AT_FMR
    return calibration_table(table, name)


def finger_evidence(scores, params: DecisionParams = DecisionParams()) -> np.ndarray:
    """Single-finger evidence ``-log10 FMR(score)`` in decades, clipped to ``[0, max]``.

    Parameters
    ----------
    scores : array_like of float
        Native matcher scores.

    Returns
    -------
    ndarray of float64, same shape
    """
    return _evidence(scores, *_calibration(params), params.finger_evidence_max_decades)


def face_evidence(cosines, params: DecisionParams = DecisionParams()) -> np.ndarray:
    """Face evidence ``-log10 FMR(cosine)`` in decades, clipped to ``[0, face_evidence_max_decades]``.

    Under the impostor hypothesis it has the same law as a finger's evidence, so it fuses as
    one more independent term (see :func:`biomatch.decide.fuse_evidence`).
    """
    return _evidence(cosines, *_calibration(params, face=True), params.face_evidence_max_decades)


def _evidence(scores, xs: np.ndarray, ys: np.ndarray, cap: float) -> np.ndarray:
    s = np.asarray(scores, np.float64)
    lo_slope = (ys[1] - ys[0]) / (xs[1] - xs[0])
    hi_slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    e = np.interp(s, xs, ys)
    e = np.where(s < xs[0], ys[0] + (s - xs[0]) * lo_slope, e)
    e = np.where(s > xs[-1], ys[-1] + (s - xs[-1]) * hi_slope, e)
    return np.clip(e, 0.0, cap)


def calibrate(impostor_scores, fmrs=(0.01, 0.001, 0.0001)) -> tuple:
    """A ``score_at_fmr`` table for :class:`DecisionParams` from measured single-finger impostor scores.

    Parameters
    ----------
    impostor_scores : array_like of float
        Native scores of non-mated finger pairs (need well over ``1 / min(fmrs)`` of them).
    fmrs : sequence of float
        False match rates to tabulate.

    Returns
    -------
    tuple of (fmr, score)
        The score at which the fraction of impostors scoring >= it equals each fmr.
    """
    s = np.sort(np.asarray(impostor_scores, np.float64))
    if s.size * min(fmrs) < 1:
        raise invalid("impostor_scores", f"at least {int(math.ceil(1 / min(fmrs)))} scores", s.size)
    return tuple((float(f), float(np.quantile(s, 1.0 - f))) for f in fmrs)
