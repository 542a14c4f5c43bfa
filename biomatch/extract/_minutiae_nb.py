"""numba kernels of minutiae detection on the skeleton and of ridge tracing."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._skeleton_nb import DX, DY, neighbour_code


@njit(cache=True, nogil=True)
def crossing_number(code):
    """Half the number of 0/1 transitions around the 8-neighbourhood."""
    t = 0
    for i in range(8):
        a = (code >> i) & 1
        b = (code >> ((i + 1) & 7)) & 1
        t += a != b
    return t // 2


@njit(cache=True, nogil=True)
def detect(skel, mask):
    """Ridge endings (crossing number 1) and bifurcations (3) inside the mask.

    Returns
    -------
    int64 (n, 3)
        Rows of ``(x, y, kind)`` with kind 1 = ending, 2 = bifurcation.
    """
    h, w = skel.shape
    out = np.empty((h * w // 4 + 1, 3), np.int64)
    n = 0
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            if skel[y, x] == 0 or mask[y, x] == 0:
                continue
            cn = crossing_number(neighbour_code(skel, y, x))
            if cn == 1 or cn == 3:
                if n < out.shape[0]:
                    out[n, 0] = x
                    out[n, 1] = y
                    out[n, 2] = 1 if cn == 1 else 2
                    n += 1
    return out[:n]


@njit(cache=True, nogil=True)
def trace(skel, y0, x0, y1, x1, max_len, kind_map, stop_at_minutiae):
    """Follow the skeleton from pixel (y0, x0) through its neighbour (y1, x1).

    Stops after ``max_len`` steps, at a dead end, or (with ``stop_at_minutiae``)
    on reaching a pixel whose ``kind_map`` is non-zero (another minutia).

    Returns
    -------
    (y, x, steps, hit)
        Last pixel reached, path length in steps, and the kind_map value there
        (0 when the walk stopped for another reason; -1 at a dead end).
    """
    h, w = skel.shape
    py, px = y0, x0
    cy, cx = y1, x1
    steps = 1
    while steps < max_len:
        if stop_at_minutiae and kind_map[cy, cx] != 0:
            return cy, cx, steps, kind_map[cy, cx]
        # Next pixel: a skeleton neighbour that is neither the previous pixel nor adjacent
        # to it (so as not to step back along a staircase); prefer 4-neighbours.
        ny, nx = -1, -1
        for pass_ in range(2):
            for i in range(pass_, 8, 2):
                yy = cy + DY[i]
                xx = cx + DX[i]
                if yy < 0 or yy >= h or xx < 0 or xx >= w or skel[yy, xx] == 0:
                    continue
                if abs(yy - py) <= 1 and abs(xx - px) <= 1:
                    continue
                ny, nx = yy, xx
                break
            if ny >= 0:
                break
        if ny < 0:
            return cy, cx, steps, -1
        py, px = cy, cx
        cy, cx = ny, nx
        steps += 1
    return cy, cx, steps, 0


@njit(cache=True, nogil=True)
def analyse(skel, minutiae, kind_map, dir_len, max_len):
    """Trace every branch of every minutia.

    Parameters
    ----------
    skel : uint8 (h, w)
    minutiae : int64 (n, 3)
        ``(x, y, kind)`` from :func:`detect`.
    kind_map : int32 (h, w)
        ``index + 1`` of the minutia at each pixel, 0 elsewhere.
    dir_len : int
        Path length (px) used to measure a branch's direction.
    max_len : int
        Longest path (px) followed to find a connected minutia.

    Returns
    -------
    branch_angle : float64 (n, 3)
        Direction (radians, image axes y down) from the minutia to the point
        ``dir_len`` px along each branch; NaN for missing branches.
    branch_hit : int64 (n, 3)
        Index of the minutia a branch reaches within ``max_len`` px, -1 if none,
        -2 if it dead-ends.
    branch_len : int64 (n, 3)
        Length in px of the walk for ``branch_hit``.
    """
    n = minutiae.shape[0]
    h, w = skel.shape
    ang = np.full((n, 3), np.nan)
    hit = np.full((n, 3), -1, np.int64)
    length = np.zeros((n, 3), np.int64)
    for m in range(n):
        x0 = minutiae[m, 0]
        y0 = minutiae[m, 1]
        b = 0
        for i in range(8):
            yy = y0 + DY[i]
            xx = x0 + DX[i]
            if yy < 0 or yy >= h or xx < 0 or xx >= w or skel[yy, xx] == 0:
                continue
            # Skip a diagonal neighbour when a 4-neighbour adjacent to it is also set: same branch.
            if i & 1:
                a1 = (i + 7) & 7
                a2 = (i + 1) & 7
                if (skel[y0 + DY[a1], x0 + DX[a1]] != 0 if 0 <= y0 + DY[a1] < h and 0 <= x0 + DX[a1] < w else False) or \
                   (skel[y0 + DY[a2], x0 + DX[a2]] != 0 if 0 <= y0 + DY[a2] < h and 0 <= x0 + DX[a2] < w else False):
                    continue
            if b >= 3:
                break
            # Direction: walk dir_len px ignoring other minutiae.
            ey, ex, s, hv = trace(skel, y0, x0, yy, xx, dir_len, kind_map, False)
            ang[m, b] = math.atan2(ey - y0, ex - x0)
            ky, kx, s2, hv2 = trace(skel, y0, x0, yy, xx, max_len, kind_map, True)
            if hv2 > 0:
                hit[m, b] = hv2 - 1
            elif hv2 < 0:
                hit[m, b] = -2
            length[m, b] = s2
            b += 1
    return ang, hit, length
