"""Stage 7: removal of false minutiae (border, spurs, short ridges, bridges, holes,
broken ridges, clusters)."""

from __future__ import annotations

import numpy as np

from ..params import ExtractionParams
from .minutiae import Candidates

__all__ = ["remove_false_minutiae"]


def _angle_diff(a, b):
    return np.abs(np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b)))))


def remove_false_minutiae(c: Candidates, keep: np.ndarray, border_dist: np.ndarray,
                          p: ExtractionParams) -> np.ndarray:
    """Decide which candidates are genuine.

    Parameters
    ----------
    c : Candidates
    keep : bool (n,)
        Candidates already valid after detection.
    border_dist : float32 (h, w)
        Distance in px to the nearest background pixel.

    Returns
    -------
    bool (n,)
        True for the minutiae kept.
    """
    n = len(c)
    keep = keep.copy()
    if n == 0:
        return keep
    # Border: ridges end where the print ends; those endings are not minutiae.
    keep &= border_dist[c.y, c.x] >= p.border_margin_px
    drop = np.zeros(n, bool)
    for i in range(n):
        for b in range(3):
            j = c.branch_hit[i, b]
            if j < 0:
                continue
            L = c.branch_len[i, b]
            ki, kj = c.kind[i], c.kind[j]
            if ki == 1 and kj == 2 and L <= p.spur_length_px:          # spur
                drop[i] = drop[j] = True
            elif ki == 1 and kj == 1 and L <= p.short_ridge_length_px:  # short ridge / dot
                drop[i] = drop[j] = True
            elif ki == 2 and kj == 2 and L <= p.hole_perimeter_px / 2:  # bridge or hole
                drop[i] = drop[j] = True
            elif j == i:                                                # small loop
                drop[i] = True
    keep &= ~drop
    # Broken ridge: two endings facing each other across a small gap.
    idx = np.flatnonzero(keep & (c.kind == 1))
    if idx.size > 1:
        xy = np.stack([c.x[idx], c.y[idx]], 1).astype(np.float64)
        d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
        gap = 1.6 * p.ridge_period_default_px
        for a in range(idx.size):
            for b in range(a + 1, idx.size):
                if d[a, b] > gap:
                    continue
                i, j = idx[a], idx[b]
                if _angle_diff(c.angle[i], c.angle[j] + np.pi) > np.pi / 4:
                    continue
                link = np.arctan2(c.y[j] - c.y[i], c.x[j] - c.x[i])
                if _angle_diff(link, c.angle[i]) < np.pi / 3:
                    drop[i] = drop[j] = True
    keep &= ~drop
    # Clusters: several minutiae packed closer than a ridge period are noise.
    idx = np.flatnonzero(keep)
    if idx.size > 2:
        xy = np.stack([c.x[idx], c.y[idx]], 1).astype(np.float64)
        d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
        close = (d < p.cluster_distance_px).sum(axis=1) - 1
        keep[idx[close >= 2]] = False
    return keep
