"""Pieces of the print map in the hand's frame: touching tips split, creases cut, lower phalanges dropped, each scored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ._map import _disk
from .params import SlapParams

_MAP_MM = 25.4 / 500 * 4  # the print map's pixel, mm (1/4 of the 500 ppi working image)



@dataclass(eq=False)
class _Piece:
    """A candidate fingertip in the hand's frame (map pixels, 0.2 mm)."""

    mask: np.ndarray  # bool, full map size
    x0: int
    x1: int
    y0: int
    y1: int
    fill: float = 0.0
    energy: float = 0.0
    score: float = 0.0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def cx(self) -> float:
        return 0.5 * (self.x0 + self.x1)



def _pieces(hmask: np.ndarray, henergy: np.ndarray, p: SlapParams, fw: float) -> list:
    """Connected regions of the upright map, split where fingers touch and cut at the crease."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(hmask.astype(np.uint8), connectivity=8)
    min_area = (p.min_width_ratio * fw) * (p.min_length_ratio * fw)
    out = []
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < 0.5 * min_area:
            continue
        comp = labels == i
        for strip in _split_columns(comp, henergy, p, fw):
            out.extend(_cut_creases(strip, henergy, p, fw))
    return [pc for pc in out if pc.mask.sum() >= 0.5 * min_area]


def _bounds(m: np.ndarray):
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1


def _split_columns(comp: np.ndarray, henergy: np.ndarray, p: SlapParams, fw: float) -> list:
    """Split a region wider than a finger: at the notches of its upper contour, else at the valleys
    of its column profile, else at a seam of low ridge energy; the pixels then shared out by
    :func:`_share_out`."""
    b = _bounds(comp)
    x0, x1, y0, y1 = b
    todo, done = [(x0, x1)], []
    prof = comp.sum(0).astype(np.float64)
    k = max(1, int(round(0.15 * fw)))
    prof = np.convolve(prof, np.ones(2 * k + 1) / (2 * k + 1), mode="same")
    # the upper contour: between touching fingertips it dips into a notch (the tips are rounded),
    # whatever is joined below them (a middle phalanx without its crease gap, the palm)
    rows = np.where(comp.any(0), comp.argmax(0), comp.shape[0]).astype(np.float64)
    while todo:
        a, b_ = todo.pop()
        # wider than a finger: split at the deepest notch of the upper contour, else at a valley
        # of the column profile; about one finger wide: only at a deep valley (a cut-off neighbour)
        if b_ - a > p.split_width_ratio * fw:
            margin = int(0.6 * fw)
            cut = _notch(rows, a, b_, margin, p.min_notch_ratio * fw)
            if cut is None:
                cut = _valley(prof, a, b_, p.split_valley_ratio, margin)
            if cut is None:
                cut = _seam(comp, henergy, a, b_, margin, p, p.split_valley_ratio)
            if cut is None and b_ - a > p.two_finger_ratio * fw:
                # too wide for one fingertip whatever the cues: the best of the weak ones
                cut = _notch(rows, a, b_, margin, 1.0)
                if cut is None:
                    cut = _seam(comp, henergy, a, b_, margin, p, np.inf)
        elif b_ - a > 0.9 * fw:
            cut = _valley(prof, a, b_, p.deep_valley_ratio, int(0.1 * fw))
        else:
            cut = None
        if cut is None:
            done.append((a, b_))
            continue
        todo.extend([(a, cut), (cut, b_)])
    strips = sorted(done)
    if len(strips) == 1:
        return [comp]
    return _share_out(comp, strips, henergy, p, fw)


def _seam(comp: np.ndarray, henergy: np.ndarray, a: int, b: int, margin: int, p: SlapParams,
          max_ratio: float) -> int | None:
    """The column of a seam through a region too wide for one finger that has neither a notch nor
    a valley (two tips pressed together side by side, one lower than the other): the path of
    least ridge energy top to bottom in (a, b), ``margin`` from either end, if it runs through the
    print for most of its length with a mean :func:`_seam_cost` under ``max_ratio`` (``inf``: the
    path's column in any case)."""
    import cv2

    lo, hi = a + max(margin, 1), b - max(margin, 1)
    if hi - lo < 1:
        return None
    sub = comp[:, lo:hi]
    rows = np.flatnonzero(sub.any(1))
    if len(rows) == 0:
        return None
    y0, y1 = int(rows[0]), int(rows[-1]) + 1
    cost = _seam_cost(henergy, p)[y0:y1, lo:hi]
    path = _least_energy_path(cost, p.seam_step_cost)
    r = np.arange(y1 - y0)
    on = sub[y0:y1][r, path]
    if not np.isfinite(max_ratio):  # a split whatever: the path's column where it crosses the print
        return lo + int(np.median(path[on] if on.any() else path))
    if on.mean() < 0.5 or cost[r, path][on].mean() >= max_ratio:
        return None
    return lo + int(np.median(path[on]))


def _share_out(comp: np.ndarray, strips: list, henergy: np.ndarray, p: SlapParams, fw: float) -> list:
    """The pixels of touching fingers shared out along the line between them, not a vertical cut.

    Between two strips the line is the path of least ridge energy from the region's top to its
    bottom (one column step per row at most), within ``split_band_ratio`` finger widths of the
    cut: the gap the closing bridged, or the seam where two pressed tips meet (their ridges do
    not run into each other, and the skin folds up there); a path integral, so the noise of the
    ridges does not lead it astray.  Then each strip's parts weaker than ``crease_drop_ratio``
    of its tip (a lower phalanx joined to it, printed lighter) come out as pieces of their own,
    so that a neighbour's phalanx is not taken into a tip.
    """
    import cv2

    sigma = p.seam_sigma_mm / _MAP_MM
    e = cv2.GaussianBlur(henergy.astype(np.float32), (0, 0), sigma)
    ys, xs = np.nonzero(comp)
    y0, y1 = int(ys.min()), int(ys.max()) + 1
    cost = _seam_cost(henergy, p)
    band = max(1, int(round(p.split_band_ratio * fw)))
    label = np.zeros(comp.shape, np.int32)
    cols = np.arange(comp.shape[1])[None, :]
    for a, _ in strips[1:]:
        lo, hi = max(a - band, 0), min(a + band + 1, comp.shape[1])
        path = _least_energy_path(cost[y0:y1, lo:hi], p.seam_step_cost) + lo
        label[y0:y1] += (cols >= path[:, None]).astype(np.int32)
    out = []
    smooth = cv2.GaussianBlur(e, (0, 0), 2 * sigma)
    for k in range(len(strips)):
        strip = comp & (label == k)
        if not strip.any():
            continue
        tip = float(np.percentile(smooth[strip], 75))
        weak = strip & (smooth < p.crease_drop_ratio * tip)
        weak = cv2.morphologyEx(weak.astype(np.uint8), cv2.MORPH_OPEN, _disk(2 * sigma)) > 0
        for part in (strip & ~weak, weak):
            n, lab = cv2.connectedComponents(part.astype(np.uint8), connectivity=8)
            out += [lab == j for j in range(1, n)]
    return out


def _seam_cost(henergy: np.ndarray, p: SlapParams) -> np.ndarray:
    """How much a map pixel looks like the line between two prints: its ridge energy over the
    lower of the strongest energies within ``seam_halfwidth_mm`` on its left and on its right.

    A seam, or a gap bridged by the closing, is a narrow valley (low, with print on both sides
    close by: near 0); the inside of a print is about 1, also where it is broadly lighter (a
    dry or over-inked patch, whose neighbours are as light), which a path of least plain energy
    would follow instead."""
    import cv2

    e = cv2.GaussianBlur(henergy.astype(np.float32), (0, 0), p.seam_sigma_mm / _MAP_MM)
    w = max(1, int(round(p.seam_halfwidth_mm / _MAP_MM)))
    kernel = np.ones((1, w + 1), np.uint8)
    # the strongest energy in [x - w, x] and in [x, x + w]: dilations with a one-sided kernel
    left = cv2.dilate(e, kernel, anchor=(w, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    right = cv2.dilate(e, kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    floor = 0.25 * float(np.percentile(e, 99))
    return e / np.maximum(np.minimum(left, right), max(floor, 1e-6))


def _least_energy_path(cost: np.ndarray, step_cost: float) -> np.ndarray:
    """Column (per row) of the top-to-bottom path of least total ``cost`` moving at most one
    column per row, each sideways step costing ``step_cost``: dynamic programming."""
    h, w = cost.shape
    acc = cost[0].astype(np.float64).copy()
    back = np.zeros((h, w), np.int8)
    inf = np.full(1, np.inf)
    for r in range(1, h):
        left = np.concatenate([inf, acc[:-1]]) + step_cost
        right = np.concatenate([acc[1:], inf]) + step_cost
        stack = np.stack([left, acc, right])
        choice = np.argmin(stack, axis=0)
        acc = stack[choice, np.arange(w)] + cost[r]
        back[r] = choice - 1
    path = np.zeros(h, np.int64)
    path[-1] = int(np.argmin(acc))
    for r in range(h - 1, 0, -1):
        path[r - 1] = path[r] + back[r, path[r]]
    return path


def _notch(top: np.ndarray, a: int, b: int, margin: int, min_depth: float) -> int | None:
    """The column in (a, b), ``margin`` from either end, where the upper contour ``top`` (row of
    the first print pixel, down is larger) dips deepest below the highest points on both sides;
    None unless it dips ``min_depth`` at least."""
    best, best_depth = None, min_depth
    for x in range(a + max(margin, 1), b - max(margin, 1)):
        depth = top[x] - max(top[a:x].min(), top[x + 1:b].min(initial=top[x]))
        if depth >= best_depth:
            best, best_depth = x, depth
    return best


def _valley(prof: np.ndarray, a: int, b: int, ratio: float, margin: int) -> int | None:
    """The deepest column in (a, b), at least ``margin`` columns from either end, whose count is
    below ``ratio`` times the lower of the peaks on its two sides."""
    best, best_ratio = None, ratio
    for x in range(a + max(margin, 1), b - max(margin, 1)):
        left, right = prof[a:x].max(initial=0.0), prof[x:b].max(initial=0.0)
        low = min(left, right)
        if low <= 0:
            continue
        r = prof[x] / low
        if r < best_ratio:
            best, best_ratio = x, r
    return best


def _cut_creases(strip: np.ndarray, henergy: np.ndarray, p: SlapParams, fw: float) -> list:
    """A piece longer than a fingertip, cut at the crease (then the rest, again, for a long finger).

    Along the finger, the ridge energy of the tip holds a level; at the first joint it falls -- the
    crease's white line, or a step down to a middle phalanx pressed lighter than the tip.  The cut
    is at the weakest row just after the first row, in the band where the joint lies, whose energy
    falls below ``crease_drop_ratio`` of the tip's level, provided at least half a finger width of
    print follows (a tip that merely fades towards its joint ends there instead).  A piece longer
    than ``max_tip_length_ratio`` widths is cut at its weakest row in the band whatever.
    """
    out = []
    m = strip
    for _ in range(4):
        b = _bounds(m)
        if b is None:
            break
        x0, x1, y0, y1 = b
        w_eff = min(max(x1 - x0, 1), 1.3 * fw)
        lo = y0 + int(p.tip_length_ratio[0] * w_eff)
        hi = min(y1 - int(0.3 * w_eff), y0 + int(p.tip_length_ratio[1] * w_eff))
        if y1 - y0 <= 1.5 * w_eff or hi <= lo:
            out.append(_Piece(m, x0, x1, y0, y1))
            break
        # ridge energy per row over the tip's width: falls at the crease's white line, at a lighter
        # middle phalanx, and at a neck where a joint is only bridged by the map's closing
        rows = (henergy * m).sum(1) / w_eff
        k = max(1, int(round(0.06 * fw)))
        rows = np.convolve(rows, np.ones(2 * k + 1) / (2 * k + 1), mode="same")
        tip_rows = rows[y0 + int(0.2 * w_eff):lo]
        level = float(np.median(tip_rows)) if len(tip_rows) else float(rows[y0:lo].max(initial=0.0))
        low = np.flatnonzero(rows[lo:hi] < p.crease_drop_ratio * level)
        cut = None
        if len(low):
            start = lo + int(low[0])
            cut = start + int(np.argmin(rows[start:min(hi, start + int(0.3 * w_eff) + 1)]))
            if y1 - cut < 0.5 * w_eff:
                cut = None  # a fade to the tip's end, not a joint
        if cut is None and y1 - y0 > p.max_tip_length_ratio * w_eff:
            cut = lo + int(np.argmin(rows[lo:hi]))
        if cut is None:
            out.append(_Piece(m, x0, x1, y0, y1))
            break
        top = m.copy()
        top[cut:] = False
        rest = m.copy()
        rest[:cut] = False
        bt = _bounds(top)
        if bt is not None:
            out.append(_Piece(top, *bt))
        m = rest
    return out


def _finger_width(pieces: list, prior: float, px_mm: float, kind: str, p: SlapParams) -> float:
    """The slap's own fingertip width: the median width of single-finger-sized pieces, else the prior."""
    ws = [pc.width for pc in pieces if 0.6 * prior <= pc.width <= 1.4 * prior and pc.height >= 0.8 * pc.width]
    if len(ws) >= 2:
        return float(np.clip(np.median(ws), 0.75 * prior, 1.3 * prior))
    return prior


def _drop_lower_phalanges(pieces: list, fw: float, p: SlapParams) -> list:
    """A piece with a finger-sized piece just above it in the same finger column is a lower phalanx.

    "Just above": the upper piece's bottom within 0.6 finger widths of this piece's top (the
    joint's crease between them), its columns over ``lower_phalanx_overlap`` of this piece's.
    """
    keep = []
    for pc in pieces:
        lower = False
        for q in pieces:
            if q is pc or q.y0 >= pc.y0 or q.width < p.min_width_ratio * fw or q.height < p.min_length_ratio * fw:
                continue
            overlap = min(pc.x1, q.x1) - max(pc.x0, q.x0)
            gap = pc.y0 - q.y1
            if overlap >= p.lower_phalanx_overlap * pc.width and -0.5 * pc.height <= gap <= 0.6 * fw \
                    and q.fill >= p.min_fill:
                lower = True
                break
        if not lower:
            keep.append(pc)
    return keep


def _score(pc: _Piece, hraw: np.ndarray, henergy: np.ndarray, inside: np.ndarray, ref: float, fw: float,
           p: SlapParams) -> None:
    import cv2

    area = float(pc.mask.sum())
    pc.fill = float(hraw[pc.mask].mean()) if area else 0.0
    pc.energy = float(henergy[pc.mask].mean()) / ref if area else 0.0
    size = min(1.0, area / (0.9 * fw * 1.3 * fw))
    # a piece against the image's edge is a cut-off print: worth less the narrower it is
    edge = cv2.dilate(pc.mask.astype(np.uint8), _disk(2)) & (~inside).astype(np.uint8)
    border = 0.5 if edge.any() and pc.width < 0.8 * fw else 1.0
    pc.score = size * min(1.0, pc.fill / 0.9) * min(1.0, pc.energy / 0.8) * border
