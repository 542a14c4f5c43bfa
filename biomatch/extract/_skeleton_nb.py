"""numba kernels of thinning (Guo & Hall 1989, algorithm A1)."""

from __future__ import annotations

import numpy as np
from numba import njit

# Neighbour order P2..P9: N, NE, E, SE, S, SW, W, NW (clockwise from north), bit i = P(i+2).
DY = np.array([-1, -1, 0, 1, 1, 1, 0, -1], np.int64)
DX = np.array([0, 1, 1, 1, 0, -1, -1, -1], np.int64)


def _guo_hall_luts() -> np.ndarray:
    """Deletion tables of the two Guo-Hall sub-iterations, indexed by the 8-bit neighbour code."""
    lut = np.zeros((2, 256), np.uint8)
    for code in range(256):
        p2, p3, p4, p5, p6, p7, p8, p9 = [(code >> i) & 1 for i in range(8)]
        c = ((not p2) and (p3 or p4)) + ((not p4) and (p5 or p6)) + \
            ((not p6) and (p7 or p8)) + ((not p8) and (p9 or p2))
        n1 = (p9 or p2) + (p3 or p4) + (p5 or p6) + (p7 or p8)
        n2 = (p2 or p3) + (p4 or p5) + (p6 or p7) + (p8 or p9)
        n = min(n1, n2)
        if c != 1 or not 2 <= n <= 3:
            continue
        m0 = (p6 or p7 or (not p9)) and p8
        m1 = (p2 or p3 or (not p5)) and p4
        lut[0, code] = 0 if m0 else 1
        lut[1, code] = 0 if m1 else 1
    return lut


GUO_HALL_LUT = _guo_hall_luts()


@njit(cache=True, nogil=True)
def neighbour_code(img, y, x):
    """8-bit code of the 8 neighbours of ``(y, x)`` (pixels outside count as 0)."""
    h, w = img.shape
    code = 0
    for i in range(8):
        yy = y + DY[i]
        xx = x + DX[i]
        if 0 <= yy < h and 0 <= xx < w and img[yy, xx] != 0:
            code |= 1 << i
    return code


@njit(cache=True, nogil=True)
def thin(binary, lut):
    """Thin a binary image (uint8, 1 = ridge) to an 8-connected one-pixel skeleton, in place.

    Returns the number of passes made.
    """
    h, w = binary.shape
    ys = np.empty(h * w, np.int64)
    xs = np.empty(h * w, np.int64)
    passes = 0
    changed = True
    while changed:
        changed = False
        for sub in range(2):
            n = 0
            for y in range(h):
                for x in range(w):
                    if binary[y, x] != 0 and lut[sub, neighbour_code(binary, y, x)]:
                        ys[n] = y
                        xs[n] = x
                        n += 1
            for i in range(n):
                binary[ys[i], xs[i]] = 0
            if n > 0:
                changed = True
        passes += 1
        if passes > 100:  # ridges are < 20 px wide at 500 dpi; guards against malformed input
            break
    # Remove the corner pixels of staircases, which 8-connectivity does not need; otherwise
    # they read as spurious bifurcations (crossing number > 2 with a redundant neighbour).
    for y in range(h):
        for x in range(w):
            if binary[y, x] == 0:
                continue
            c = neighbour_code(binary, y, x)
            n_ = c & 1
            e_ = (c >> 2) & 1
            s_ = (c >> 4) & 1
            w_ = (c >> 6) & 1
            # A pixel with two 4-neighbours at a right angle and the diagonal between them empty
            # on the other side is redundant when its removal keeps the two neighbours connected.
            if (n_ and e_ and not ((c >> 5) & 1) and not s_ and not w_) or \
               (e_ and s_ and not ((c >> 7) & 1) and not n_ and not w_) or \
               (s_ and w_ and not ((c >> 1) & 1) and not n_ and not e_) or \
               (w_ and n_ and not ((c >> 3) & 1) and not s_ and not e_):
                binary[y, x] = 0
    return passes
