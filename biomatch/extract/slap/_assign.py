"""Which pieces are fingertips and which positions they take, chosen together against the hand's geometry."""

from __future__ import annotations

import itertools
import math

import numpy as np
from .params import SlapParams




def _candidates(pieces: list, n: int, fw: float, p: SlapParams) -> list:
    """Finger-sized, filled pieces, the best ``n + 3`` by score (enough for any choice below)."""
    ok = [pc for pc in pieces if pc.width >= p.min_width_ratio * fw and pc.height >= p.min_length_ratio * fw
          and pc.fill >= p.min_fill and pc.score >= 0.1]
    ok.sort(key=lambda pc: -pc.score)
    return sorted(ok[:n + 3], key=lambda pc: pc.cx)


def _choose(cands: list, kind: str, order: tuple, fw: float, px_mm: float, p: SlapParams, w_map: int,
            absent: frozenset = frozenset()) -> list:
    """Which candidates are the slap's fingertips, and their positions: ``[(piece, position)]``.

    Every subset of the candidates (in x order) against every choice of slots (in order) is
    costed, the lowest cost wins::

        cost = geometry (chi-square of the x spacing and the arc of tips against the hand's
               template, after the best shift; thumbs: none)
             + sum over chosen pieces of -2 ln(score)    (a doubtful piece costs)
             + missing_cost per slot left empty           (a missing finger costs too)
             + overlap: two chosen pieces in one column (the same finger twice) are impossible

    so that a missing finger leaves the right gap and a stray blob (handwriting, a cut-off
    neighbour) is taken only when the hand's geometry wants it.  Slots in ``absent`` (declared
    missing by the record) are never taken, and leaving them empty costs nothing.
    """
    n = len(order) - len(absent)
    best, best_cost = [], math.inf
    for k in range(min(n, len(cands)), 0, -1):
        for subset in itertools.combinations(cands, k):
            if any(min(a.x1, b.x1) - max(a.x0, b.x0) > 0.6 * min(a.width, b.width)
                   for a, b in zip(subset, subset[1:])):
                continue
            base = sum(-2.0 * math.log(max(pc.score, 1e-3)) for pc in subset) + p.missing_cost * (n - k)
            if base >= best_cost:
                continue
            slots, geo = _slots(subset, kind, order, fw, px_mm, p, w_map, absent)
            if base + geo < best_cost:
                best, best_cost = list(zip(subset, slots)), base + geo
    return best


def _slots(kept: tuple, kind: str, order: tuple, fw: float, px_mm: float, p: SlapParams, w_map: int,
           absent: frozenset = frozenset()):
    """The positions of ``kept`` (in x order) that fit the hand's template best, and the fit's cost."""
    m = len(kept)
    allowed = [i for i, q in enumerate(order) if q not in absent]
    if kind == "thumbs":
        if m == len(order):
            # both thumbs lie on the platen side by side: their tips at about one height
            dy = (kept[0].y0 - kept[1].y0) / (p.thumb_rise_sigma_mm * px_mm)
            return list(order), float(dy * dy)
        if len(allowed) == 1:
            return [order[allowed[0]]], 0.0
        # one thumb: its side of the image (left thumb 6 on the left)
        return [order[0] if kept[0].cx < w_map / 2.0 else order[1]], 0.0
    rise = np.asarray(p.tip_rise_mm, np.float64) * px_mm  # index, middle, ring, little
    if kind == "left4":
        rise = rise[::-1]  # image order little, ring, middle, index
    spacing = p.spacing_ratio * fw
    xs = np.array([pc.cx for pc in kept])
    tops = np.array([-pc.y0 for pc in kept], np.float64)  # up is positive
    best, best_cost = None, math.inf
    for slots in itertools.combinations(allowed, m):
        s = np.asarray(slots, np.float64)
        # x: xs ~ x0 + step * slot, the step (this hand's finger spacing) fitted too, under a
        # prior about the usual spacing (fingers more or less spread on the platen)
        sx, ss = p.position_sigma_ratio * spacing, p.spacing_sigma_ratio * spacing
        a = np.array([[len(s) / sx**2, s.sum() / sx**2], [s.sum() / sx**2, (s * s).sum() / sx**2 + 1 / ss**2]])
        rhs = np.array([xs.sum() / sx**2, (xs * s).sum() / sx**2 + spacing / ss**2])
        x0, step = np.linalg.solve(a, rhs)
        ex = np.append((xs - (x0 + step * s)) / sx, (step - spacing) / ss)
        # heights: tops ~ t0 + rise[slot]
        r = rise[list(slots)]
        t0 = float(np.mean(tops - r))
        ey = (tops - (t0 + r)) / (p.tip_rise_sigma_mm * px_mm)
        # the hand is placed about the middle of the platen: its centre (between the middle and
        # ring fingers) within about one finger spacing of the image's centre
        ec = (x0 + step * 0.5 * (len(order) - 1) - w_map / 2.0) / (p.centre_sigma_ratio * spacing)
        cost = float((ex ** 2).sum() + (ey ** 2).sum() + ec ** 2)
        if cost < best_cost:
            best, best_cost = slots, cost
    return [order[i] for i in best], best_cost
