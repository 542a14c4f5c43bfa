"""Decision thresholds from a development set: target FMR / FPIR, and a score -> FMR table.

Convention: a comparison is accepted when ``score >= threshold`` (as in :mod:`.metrics`).
The threshold for a target FMR ``f`` is the *smallest* threshold whose development FMR
``#{impostor >= t} / I`` is at most ``f`` — the definition behind
:data:`biomatch.match.SCORE_AT_FMR`. If ``u_k`` is the lowest impostor score that may
still be accepted, every ``t`` in ``(u_(k-1), u_k]`` gives the same FMR and the smallest
is just above ``u_(k-1)`` (``numpy.nextafter``); the FNMR there is the lowest possible at
that FMR, so it equals :func:`~.metrics.fnmr_at_fmr` (FMR100 etc.) on the same data.
When every impostor may be accepted (``f`` >= 1) the threshold is the lowest impostor score.

Resolution: with ``I`` impostor scores no FMR below ``1 / I`` can be observed. For a
target below what the ties at the top allow, the threshold is put just above the highest
impostor score, ``resolved`` is False, and the honest statement about its FMR is the
rule-of-3 bound ``~3 / I`` (:func:`.bootstrap.rule_of_three`), which
:func:`threshold_at_fmr` reports as ``fmr_upper``.

A :class:`CalibrationTable` stores thresholds for a ladder of FMRs (1, 2, 5 x 10^-k down
to the resolution of the development set) with the matcher's identity, as JSON, so that
each matcher version can ship one and users can translate a score into an FMR.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BiomatchError, invalid
from .bootstrap import Interval, Resampler, _check_level, rule_of_three
from .metrics import _check_rate, check_scores

__all__ = ["ThresholdChoice", "threshold_at_fmr", "threshold_at_fpir", "CalibrationTable", "calibration_table",
           "round_up"]


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold chosen on a development set.

    Attributes
    ----------
    target : float
        Requested false match (or false positive identification) rate.
    threshold : float
        Accept when ``score >= threshold``.
    fmr : float
        Development FMR (or FPIR) at the threshold, ``<= target``.
    fmr_upper : float
        95% upper bound of the true rate: the rule of 3 when ``fmr`` is 0, else ``fmr``'s
        exact binomial (Clopper-Pearson) upper bound.
    fnmr : float or None
        Development FNMR (or FNIR) at the threshold, when genuine scores were given.
    n_impostor, n_genuine : int
    resolved : bool
        False when the target is below the resolution of the impostor set.
    ci : Interval or None
        Bootstrap interval of the threshold itself (:func:`threshold_at_fmr` with ``n_boot``).
    """

    target: float
    threshold: float
    fmr: float
    fmr_upper: float
    fnmr: float | None
    n_impostor: int
    n_genuine: int
    resolved: bool
    ci: Interval | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = None if self.ci is None else self.ci.to_dict()
        return d


def round_up(value: float, digits: int = 4) -> float:
    """``value`` rounded up (towards +inf) to ``digits`` significant digits, for display.

    A threshold shown rounded to nearest could fall below the impostor score it must
    reject; rounded up it stays on the safe side (its FMR can only be lower).

    Examples
    --------
    >>> round_up(0.10333394259214402), round_up(-0.12345), round_up(0.0)
    (0.1034, -0.1234, 0.0)
    """
    v = float(value)
    if v == 0.0 or not math.isfinite(v):
        return v
    step = 10.0 ** (math.floor(math.log10(abs(v))) - digits + 1)
    up = math.ceil(v / step - 1e-9) * step  # tolerance: an exact 4-digit value stays as it is
    return float(f"{up:.{digits}g}") if up >= v else float(f"{up + step:.{digits}g}")


def _threshold_index(u: np.ndarray, counts: np.ndarray, target: float) -> int:
    """Index into ``u`` (sorted unique impostor scores) of the threshold; ``len(u)`` = above all."""
    total = counts.sum()
    above = np.cumsum(counts[::-1])[::-1] / total  # FMR(u_j)
    return int(np.searchsorted(-above, -(target + 1e-12), side="left"))


def _value(u: np.ndarray, k: int) -> float:
    """The smallest threshold accepting ``u[k:]`` only: just above ``u[k-1]`` (``u[0]`` for k = 0)."""
    return float(u[0]) if k == 0 else float(np.nextafter(u[k - 1], np.inf))


def _binomial_upper(k: int, n: int, level: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a rate with ``k`` errors in ``n`` trials."""
    if k == 0:
        return rule_of_three(n, level)
    if k >= n:
        return 1.0
    from scipy.stats import beta  # scipy comes with scikit-image, a core dependency

    return float(beta.ppf(level, k + 1, n - k))


def threshold_at_fmr(impostor, fmr: float, *, genuine=None, impostor_subjects=None, n_boot: int = 0,
                     level: float = 0.95, seed: int | None = 0) -> ThresholdChoice:
    """The threshold whose development FMR is at most ``fmr`` (module docstring).

    Parameters
    ----------
    impostor : array_like of float, shape (I,)
        Impostor (non-mated) scores of the development set.
    fmr : float
        Target rate in [0, 1], e.g. 1e-4.
    genuine : array_like of float, shape (G,), optional
        Genuine scores, to report the FNMR at the threshold.
    impostor_subjects : array_like, shape (I,) or (I, 2), optional
        Subject ids of the impostor comparisons, for the bootstrap over subjects.
    n_boot : int
        Bootstrap replicates for the interval of the threshold (0: none).
    level : float
        Confidence level of that interval.
    seed : int or None

    Returns
    -------
    ThresholdChoice

    Examples
    --------
    >>> t = threshold_at_fmr([1, 2, 3, 4], 0.25, genuine=[3.5, 5])
    >>> t.threshold, t.fmr, t.fnmr, t.resolved      # just above 3: only the impostor at 4 is accepted
    (3.0000000000000004, 0.25, 0.0, True)
    """
    imp = check_scores(impostor, "impostor")
    target = _check_rate(fmr, "fmr")
    g = None if genuine is None else check_scores(genuine, "genuine")
    u, counts = np.unique(imp, return_counts=True)
    k = _threshold_index(u, counts, target)
    thr = _value(u, k)
    n_above = int(counts[k:].sum())
    ci = None
    if n_boot:
        lv = _check_level(level)
        subj = None if impostor_subjects is None else np.empty(0)
        r = Resampler(None, imp, subj, impostor_subjects, seed)
        bins = np.searchsorted(u, imp)
        reps = []
        if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
            raise invalid("n_boot", "an int >= 0", n_boot)
        for _ in range(int(n_boot)):
            _, wi = r.weights()
            c = np.bincount(bins, weights=wi, minlength=u.size)
            if c.sum() > 0:
                reps.append(_value(u, _threshold_index(u, c, target)))
        alpha = 1 - lv
        lo, hi = np.quantile(np.asarray(reps), [alpha / 2, 1 - alpha / 2])
        ci = Interval(thr, float(lo), float(hi), lv, r.method, len(reps), r.seed)
    return ThresholdChoice(
        target=target, threshold=thr, fmr=n_above / imp.size, fmr_upper=_binomial_upper(n_above, imp.size),
        fnmr=None if g is None else float((g < thr).mean()), n_impostor=int(imp.size),
        n_genuine=0 if g is None else int(g.size), resolved=k < u.size, ci=ci)


def threshold_at_fpir(nonmated_top_scores, fpir: float, *, mated_scores=None, n_boot: int = 0,
                      level: float = 0.95, seed: int | None = 0) -> ThresholdChoice:
    """The threshold whose development FPIR is at most ``fpir`` (open-set identification).

    ``nonmated_top_scores`` (shape (K,)) are the highest candidate scores of non-mated
    searches (:attr:`.identification.SearchOutcomes.nonmated_top_score`; ``-inf``
    entries, empty lists, are dropped as they can never be false positives but still
    count in ``K``); ``mated_scores`` the mates' scores, to report the FNIR (rank
    ignored). Same rule as :func:`threshold_at_fmr` with FMR read as FPIR.
    """
    t = np.asarray(nonmated_top_scores, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise invalid("nonmated_top_scores", "a non-empty 1-d array", t.shape)
    finite = t[np.isfinite(t)]
    if finite.size == 0:  # every non-mated search returned nothing: any threshold gives FPIR 0
        raise invalid("nonmated_top_scores", "at least one finite top score", "only -inf (empty candidate lists)")
    # Empty lists count in K: scale the target so that the rate is per search.
    target = _check_rate(fpir, "fpir")
    ms = None
    if mated_scores is not None:
        ms = np.asarray(mated_scores, dtype=np.float64)
        if ms.ndim != 1 or ms.size == 0 or np.isnan(ms).any() or (ms == np.inf).any():
            raise invalid("mated_scores", "a non-empty 1-d array of scores (-inf for a mate not found)", ms.shape)
    choice = threshold_at_fmr(finite, min(1.0, target * t.size / finite.size), n_boot=n_boot, level=level,
                              seed=seed)
    n_above = round(choice.fmr * finite.size)
    return ThresholdChoice(
        target=target, threshold=choice.threshold, fmr=n_above / t.size, fmr_upper=_binomial_upper(n_above, t.size),
        fnmr=None if ms is None else float((ms < choice.threshold).mean()), n_impostor=int(t.size),
        n_genuine=0 if ms is None else int(ms.size), resolved=choice.resolved, ci=choice.ci)


def _ladder(n_impostor: int) -> list[float]:
    """1, 2, 5 x 10^-k from 0.5 down to the resolution 1 / n_impostor."""
    out, k = [], 0
    while True:
        for m in (5, 2, 1):
            f = m * 10.0 ** (-k - 1)
            if f * n_impostor < 1 - 1e-9:
                return out
            out.append(f)
        k += 1


@dataclass(frozen=True)
class CalibrationTable:
    """Score <-> FMR for one matcher version, measured on a development set.

    Attributes
    ----------
    fmr_targets : tuple of float
        Decreasing target FMRs.
    thresholds : tuple of float
        Threshold of each target (non-decreasing).
    fmr, fnmr : tuple of float
        Development FMR and FNMR at each threshold (FNMR NaN without genuine scores).
    n_impostor, n_genuine : int
    matcher : str
        Identity of the matcher and parameters (e.g. ``"biomatch 0.1.0 MatchParams 1a2b..."``).
    dataset : str
        Description of the development set.

    Notes
    -----
    Immutable, thread-safe. :meth:`fmr_at` interpolates log10 FMR linearly in the score
    between rows: an approximation between measured points, exact at the thresholds.
    """

    fmr_targets: tuple
    thresholds: tuple
    fmr: tuple
    fnmr: tuple
    n_impostor: int
    n_genuine: int
    matcher: str = ""
    dataset: str = ""
    version: int = field(default=1)

    def threshold_for(self, fmr: float) -> float:
        """Threshold of the tabulated target at or below ``fmr`` (the safe side)."""
        target = _check_rate(fmr, "fmr")
        ok = [t for f, t in zip(self.fmr_targets, self.thresholds) if f <= target + 1e-15]
        if not ok:
            raise invalid("fmr", f"a rate >= {min(self.fmr_targets):g} (the table's resolution)", fmr)
        return ok[0]

    def fmr_at(self, score: float) -> float:
        """Approximate FMR of a score (see Notes); clamped to the table's range."""
        s = float(score)
        if not math.isfinite(s):
            raise invalid("score", "a finite score", score)
        t = np.asarray(self.thresholds, dtype=np.float64)
        lf = np.log10(np.maximum(np.asarray(self.fmr, dtype=np.float64), 1e-300))
        if s <= t[0]:
            return float(self.fmr[0])
        if s >= t[-1]:
            return float(self.fmr[-1])
        return float(10 ** np.interp(s, t, lf))

    def rows(self) -> list[dict]:
        return [{"fmr_target": f, "threshold": t, "fmr": m, "fnmr": n}
                for f, t, m, n in zip(self.fmr_targets, self.thresholds, self.fmr, self.fnmr)]

    def to_json(self) -> str:
        d = asdict(self)
        d["fnmr"] = [None if isinstance(v, float) and math.isnan(v) else v for v in self.fnmr]
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "CalibrationTable":
        try:
            d = json.loads(text)
            if d.get("version") != 1:
                raise invalid("version", "1", d.get("version"))
            d["fnmr"] = [math.nan if v is None else float(v) for v in d["fnmr"]]
            table = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BiomatchError(f"calibration table: expected the JSON written by CalibrationTable.to_json, "
                                f"got invalid content ({exc})") from exc
        n = len(table.fmr_targets)
        if not n or any(len(getattr(table, k)) != n for k in ("thresholds", "fmr", "fnmr")):
            raise invalid("calibration table", "non-empty columns of one length", "columns of other lengths")
        return table

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        try:
            p.write_text(self.to_json())
        except OSError as exc:
            raise BiomatchError(f"calibration table: cannot write {str(p)!r}: {exc.strerror}") from exc
        return p

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationTable":
        try:
            return cls.from_json(Path(path).read_text())
        except OSError as exc:
            raise BiomatchError(f"calibration table: cannot read {str(path)!r}: {exc.strerror}") from exc


def calibration_table(impostor, genuine=None, *, fmr_targets=None, matcher: str = "",
                      dataset: str = "") -> CalibrationTable:
    """Thresholds for a ladder of FMRs (default 0.5, 0.2, 0.1, ... down to ``1 / I``).

    Parameters
    ----------
    impostor : array_like of float, shape (I,)
    genuine : array_like of float, shape (G,), optional
    fmr_targets : sequence of float, optional
        Targets; those below the resolution ``1 / I`` are refused.
    matcher, dataset : str
        Stored in the table (what produced the scores, on which data).

    Examples
    --------
    >>> t = calibration_table(np.arange(100.0), fmr_targets=[0.1, 0.01])
    >>> t.thresholds, t.fmr
    ((89.00000000000001, 98.00000000000001), (0.1, 0.01))
    """
    imp = check_scores(impostor, "impostor")
    if fmr_targets is None:
        targets = _ladder(imp.size)
    else:
        targets = sorted({_check_rate(f, "fmr_targets") for f in fmr_targets}, reverse=True)
        low = [f for f in targets if f * imp.size < 1 - 1e-9]
        if low or not targets:
            raise invalid("fmr_targets", f"rates >= 1/I = {1 / imp.size:.3g} (I = {imp.size} impostor scores)",
                          low[0] if low else "none")
    if not targets:
        raise invalid("impostor", "at least 2 scores for a table", imp.size)
    rows = [threshold_at_fmr(imp, f, genuine=genuine) for f in targets]
    return CalibrationTable(
        fmr_targets=tuple(targets), thresholds=tuple(r.threshold for r in rows), fmr=tuple(r.fmr for r in rows),
        fnmr=tuple(math.nan if r.fnmr is None else r.fnmr for r in rows), n_impostor=int(imp.size),
        n_genuine=0 if genuine is None else int(np.size(genuine)), matcher=str(matcher), dataset=str(dataset))
