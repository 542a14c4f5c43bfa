"""Sequence check: do the rolled prints sit at the positions the card claims?

A ten-print capture takes each finger rolled, one at a time, and the slaps (four fingers at once,
then the thumbs).  A hurried operator rolls the right middle finger into the ring finger's box,
or the whole left hand where the right should be; the slaps cannot be taken out of order (the
fingers lie side by side), so they are the reference.  Each rolled print is compared with every
slap segment (:class:`~biomatch.match.FingerprintMatcher`), the scores read as evidence in
decades of false-match rate (``e = -log10 FMR``, :func:`~biomatch.decide.evidence.finger_evidence`,
the matcher's calibration table :data:`~biomatch.match.SCORE_AT_FMR`), and the claimed order is
checked against the order that explains the evidence best::

    E[i, j]     evidence that rolled print i (claimed position) is slap segment j
    benefit     E[i, i] on the diagonal; off it, E[i, j] only when it reaches
                -log10(move_fmr) and beats E[i, i] by margin_decades (else 0: no move on
                weak evidence); a dummy column per row (benefit 0) for a finger no slap shows
    order       the assignment of rolled prints to slap positions of maximum total benefit
                (Hungarian method, scipy's linear_sum_assignment; scipy comes with
                scikit-image, a core dependency); then the displaced fingers (their slap
                position taken by a mover) go to the positions the movers left, on a weaker
                match (complete_fmr): the other half of a swap
    verdict     the card fails when that order moves any finger: the moved positions, the
                suggested order, and whether it is a hand swap (rolled 1-5 are 6-10)

Why this rule: under the impostor hypothesis one comparison reaches ``x`` decades with
probability ``10**-x`` (that is how the table is calibrated), so with ``move_fmr = 1e-4`` a card's
90 non-mated pairs put one impostor over the move threshold on about 1% of correct cards -- and
such a lone impostor never wins the assignment, since moving finger i to j displaces finger j's
own genuine evidence.  A real swap of a and b gives two genuine off-diagonal pairs; it is missed
only when both fail to reach the threshold.  Missing fingers (amputated, unprintable, not found in
the slap) have no row or no column: they neither confirm nor contradict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import invalid
from ..match import FingerprintMatcher, PreparedTemplate, prepare
from ..params import MatchParams
from ..template import Template
from .evidence import finger_evidence
from .params import DecisionParams

__all__ = ["SequenceParams", "SequenceCheck", "check_sequence", "suggest_order"]

_HAND_SWAP = {**{p: p + 5 for p in range(1, 6)}, **{p: p - 5 for p in range(6, 11)}}


@dataclass(frozen=True)
class SequenceParams:
    """Tunables of the sequence check.

    Attributes
    ----------
    move_fmr : float
        A rolled print is moved to another slap position only if their score reaches the
        single-finger threshold at this false match rate (1e-4: 4 decades of evidence).
    margin_decades : float
        ... and beats the evidence for its claimed position by this many decades.
    confirm_fmr : float
        A finger whose rolled print and own slap segment reach this FMR is "confirmed".
    complete_fmr : float
        Once a rolled print is moved to slap position j, finger j's own rolled print (displaced)
        goes to a position left free by a move on a match at this FMR only (1e-2: 2 decades): a
        swap's second half is expected, not a chance event.
    """

    move_fmr: float = 1e-4
    margin_decades: float = 1.0
    confirm_fmr: float = 1e-3
    complete_fmr: float = 1e-2

    def __post_init__(self):
        for name in ("move_fmr", "confirm_fmr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise invalid(f"SequenceParams.{name}", "a rate in (0, 1)", v)
        if isinstance(self.complete_fmr, bool) or not 0 < self.complete_fmr < 1:
            raise invalid("SequenceParams.complete_fmr", "a rate in (0, 1)", self.complete_fmr)
        if isinstance(self.margin_decades, bool) or not isinstance(self.margin_decades, (int, float)) \
                or not math.isfinite(self.margin_decades) or self.margin_decades < 0:
            raise invalid("SequenceParams.margin_decades", "a number >= 0", self.margin_decades)


@dataclass(frozen=True)
class SequenceCheck:
    """The outcome of a sequence check.

    Attributes
    ----------
    ok : bool
        No finger is moved by the best order.
    rolled, slap : tuple of int
        Positions of the rolled prints (rows) and of the slap segments (columns).
    scores : ndarray (len(rolled), len(slap)) of float64
        Native matcher scores.
    evidence : ndarray, same shape
        Decades of false-match rate.
    suggested : dict
        Claimed position -> the position its rolled print is (only the moved ones).
    swapped : tuple of int
        The claimed positions that move (sorted).
    hand_swap : bool
        The moves are a hand swap: at least three, and 60% of the moved fingers, go from i to
        i +- 5 (the rest: a finger swap on top).
    confirmed : tuple of int
        Positions whose rolled print matches its own slap segment at ``confirm_fmr``.
    unverified : tuple of int
        Positions with a rolled print and a slap segment that neither confirm nor move.
    """

    ok: bool
    rolled: tuple
    slap: tuple
    scores: np.ndarray = field(repr=False)
    evidence: np.ndarray = field(repr=False)
    suggested: dict = field(default_factory=dict)
    swapped: tuple = ()
    hand_swap: bool = False
    confirmed: tuple = ()
    unverified: tuple = ()

    def describe(self) -> str:
        """One line: passed (how many confirmed), or which fingers and the suggested order."""
        if self.ok:
            text = f"sequence check passed: {len(self.confirmed)} of {len(set(self.rolled) & set(self.slap))} " \
                   f"fingers confirmed against the slaps"
            if self.unverified:
                text += f" (unverified: {', '.join(map(str, self.unverified))})"
            return text
        moves = ", ".join(f"rolled {a} is finger {b}" for a, b in sorted(self.suggested.items()))
        kind = "hands swapped" if self.hand_swap else "fingers swapped"
        return f"sequence check FAILED ({kind}): {moves}"

    def as_dict(self) -> dict:
        return {"ok": self.ok, "swapped": list(self.swapped), "hand_swap": self.hand_swap,
                "suggested": {str(a): b for a, b in sorted(self.suggested.items())},
                "confirmed": list(self.confirmed), "unverified": list(self.unverified),
                "rolled": list(self.rolled), "slap": list(self.slap),
                "scores": [[round(float(s), 4) for s in row] for row in self.scores]}


def _prepared(fingers: Mapping, name: str, mp: MatchParams) -> dict:
    if not isinstance(fingers, Mapping):
        raise invalid(name, "a mapping {position 1-10: Template}", type(fingers).__name__)
    out = {}
    for p, t in fingers.items():
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 1 <= int(p) <= 10:
            raise invalid(f"{name} key", "a finger position 1-10", p)
        if isinstance(t, PreparedTemplate):
            out[int(p)] = t
        elif isinstance(t, Template):
            out[int(p)] = prepare(t, mp)
        else:
            raise invalid(f"{name}[{p}]", "a Template or PreparedTemplate", type(t).__name__)
    return out


def check_sequence(rolled: Mapping, slap: Mapping, params: SequenceParams = SequenceParams(),
                   decision: DecisionParams = DecisionParams(), match_params: MatchParams = MatchParams()
                   ) -> SequenceCheck:
    """Check rolled prints against slap segments; suggest the order the evidence supports.

    Parameters
    ----------
    rolled : mapping int -> Template
        Rolled prints by the position the card claims (missing fingers absent).
    slap : mapping int -> Template
        Slap segments by position (from :func:`biomatch.extract.slap.segment_slap`).
    params : SequenceParams
    decision : DecisionParams
        Its calibration table (``score_at_fmr``, else the matcher's) turns scores into evidence.

    Returns
    -------
    SequenceCheck

    Notes
    -----
    ``len(rolled) * len(slap)`` comparisons (at most 100, about 0.1 s); thread-safe.
    """
    if not isinstance(params, SequenceParams):
        raise invalid("params", "a SequenceParams", type(params).__name__)
    r = _prepared(rolled, "rolled", match_params)
    s = _prepared(slap, "slap", match_params)
    rows, cols = tuple(sorted(r)), tuple(sorted(s))
    scores = np.zeros((len(rows), len(cols)), np.float64)
    cand = [s[c] for c in cols]
    for i, p in enumerate(rows):
        if cand:
            scores[i] = FingerprintMatcher(r[p], match_params).match_many(cand)
    ev = finger_evidence(scores, decision) if scores.size else scores
    suggested = suggest_order(rows, cols, ev, params)
    moved = {a: b for a, b in suggested.items() if a != b}
    col = {c: j for j, c in enumerate(cols)}
    confirm = -math.log10(params.confirm_fmr)
    confirmed = tuple(p for i, p in enumerate(rows) if p in col and p not in moved and ev[i, col[p]] >= confirm)
    unverified = tuple(p for p in rows if p in col and p not in moved and p not in confirmed)
    across = sum(_HAND_SWAP[a] == b for a, b in moved.items())
    hand = across >= max(3, 0.6 * len(moved))  # a hand swap, possibly with a finger swap on top
    return SequenceCheck(ok=not moved, rolled=rows, slap=cols, scores=scores, evidence=ev, suggested=moved,
                         swapped=tuple(sorted(moved)), hand_swap=hand, confirmed=confirmed, unverified=unverified)


def suggest_order(rows, cols, evidence: np.ndarray, params: SequenceParams = SequenceParams()) -> dict:
    """The assignment of rolled rows to slap columns of maximum benefit (see the module docstring).

    Returns
    -------
    dict
        Claimed position -> suggested position, for every row assigned to a slap column (a row
        kept on a dummy column -- no slap evidence either way -- is left out).
    """
    from scipy.optimize import linear_sum_assignment

    n, m = len(rows), len(cols)
    if n == 0 or m == 0:
        return {}
    move = -math.log10(params.move_fmr)
    col = {c: j for j, c in enumerate(cols)}
    benefit = np.zeros((n, m + n))
    for i, p in enumerate(rows):
        own = evidence[i, col[p]] if p in col else 0.0
        for j, c in enumerate(cols):
            e = evidence[i, j]
            if c == p:
                benefit[i, j] = e
            elif e >= move and e >= own + params.margin_decades:
                benefit[i, j] = e
        # dummy column i: stay unexplained, benefit 0 (ties broken towards the claimed position below)
    # the claimed position wins ties (a tiny bonus smaller than any evidence difference that matters)
    for i, p in enumerate(rows):
        if p in col:
            benefit[i, col[p]] += 1e-6
    ri, ci = linear_sum_assignment(benefit, maximize=True)
    out = {}
    for i, j in zip(ri, ci):
        if j < m and benefit[i, j] > 0:
            out[rows[i]] = cols[j]
    # completing the moves: a finger displaced from its own slap position (another rolled print is
    # that finger) most likely went where the mover came from, so a weaker match suffices there
    complete = -math.log10(params.complete_fmr)
    taken = set(out.values())
    displaced = [i for i, p in enumerate(rows) if p in col and p in taken and out.get(p) != p]
    vacated = [j for j, c in enumerate(cols) if c not in taken]
    if displaced and vacated:
        sub = np.array([[evidence[i, j] if evidence[i, j] >= complete else 0.0 for j in vacated]
                        for i in displaced])
        for a, b in zip(*linear_sum_assignment(sub, maximize=True)):
            if sub[a, b] > 0:
                out[rows[displaced[a]]] = cols[vacated[b]]
    return out
