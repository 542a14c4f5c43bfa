"""numba kernels of :mod:`biomatch.retrieval.codes` (minutia-pair histograms, Hamming distances).

Plain ``@njit(cache=True)`` functions over contiguous arrays; the Python layer in
``codes.py`` validates, coerces dtypes and allocates.  One signature per kernel
(float32 / int64 / uint64 inputs) to keep cold JIT time small.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_TWO_PI = 2.0 * math.pi


@njit(cache=True, nogil=True)
def pair_histograms(pts, offsets, max_distance, n_dist, n_angle):
    """Histogram of the minutia pairs of each template, rotation and translation invariant.

    Every ordered pair (i, j) of minutiae at most ``max_distance`` apart votes for
    ``(distance, angle_i - phi, angle_j - phi)``, where ``phi`` is the direction of the
    segment from i to j; votes are split linearly between the two nearest bins of each
    axis (angles wrap around).

    Parameters
    ----------
    pts : float32 (m, 3)
        ``x, y`` (px, y down) and ``angle`` (rad, counter-clockwise as displayed) of the
        minutiae of all templates, concatenated.
    offsets : int64 (t + 1,)
        Template ``i`` owns rows ``offsets[i]:offsets[i+1]``.
    max_distance : float
        Pairs farther apart (px) do not vote.
    n_dist, n_angle : int
        Bins of the distance axis (over ``[0, max_distance]``) and of each angle axis.

    Returns
    -------
    float32 (t, n_dist * n_angle * n_angle)
        Vote counts (distance-major).

    Notes
    -----
    Bit-identical to the plain formulation (``tests/retrieval/test_codes_kernel.py`` keeps it as
    the reference): the same float operations on the same values, each cell's votes added in the
    same order.  Only the wrapping is cheaper: Python's float ``%`` (an ``fmod`` and a sign
    fix) is replaced by one conditional add or subtract of ``2 pi``, exact where the plain form
    is (``angle - phi`` lies in ``(-pi, 3 pi)``; ``x - 2 pi`` is exact there by Sterbenz' lemma,
    and ``x + 2 pi`` is the very operation the sign fix performs), and the integer ``%`` of the
    bin indices (a division, six per pair) by a conditional add; 1.35x fewer cycles per pair
    (``atan2f`` is half of what remains).
    """
    t_count = offsets.shape[0] - 1
    out = np.zeros((t_count, n_dist * n_angle * n_angle), np.float32)
    md2 = max_distance * max_distance
    d_scale = n_dist / max_distance
    a_scale = n_angle / _TWO_PI
    for t in range(t_count):
        _one_histogram(pts, offsets[t], offsets[t + 1], out[t], md2, d_scale, a_scale, n_dist, n_angle)
    return out


@njit(cache=True, nogil=True, inline="always")
def _wrap(x):
    """``x % 2 pi`` for ``x`` in ``[-2 pi, 4 pi)``, bit-identical to Python's float ``%`` there."""
    if x < 0.0:
        return x + _TWO_PI
    if x >= _TWO_PI:
        return x - _TWO_PI
    return x


@njit(cache=True, nogil=True)
def _one_histogram(pts, a, b, row, md2, d_scale, a_scale, n_dist, n_angle):
    for i in range(a, b):
        xi, yi, ai = pts[i, 0], pts[i, 1], pts[i, 2]
        for j in range(a, b):
            if i == j:
                continue
            dx = pts[j, 0] - xi
            dy = yi - pts[j, 1]  # y up, so that angles and positions turn together
            d2 = dx * dx + dy * dy
            if d2 > md2:
                continue
            phi = math.atan2(dy, dx)
            fd = math.sqrt(d2) * d_scale - 0.5
            x = ai - phi
            y = pts[j, 2] - phi
            # Angles lie in [0, 2 pi) (Template checks them), so x, y lie in (-pi, 3 pi); anything
            # else (never seen) takes the plain modulo.
            x = _wrap(x) if -_TWO_PI <= x < 2.0 * _TWO_PI else x % _TWO_PI
            y = _wrap(y) if -_TWO_PI <= y < 2.0 * _TWO_PI else y % _TWO_PI
            fi = x * a_scale - 0.5
            fj = y * a_scale - 0.5
            d0 = int(math.floor(fd))
            i0 = int(math.floor(fi))
            j0 = int(math.floor(fj))
            wd, wi, wj = fd - d0, fi - i0, fj - j0
            # fi, fj lie in [-0.5, n_angle - 0.5]: i0 in [-1, n_angle - 1], one wrap each way suffices
            i1, j1 = i0 + 1, j0 + 1
            if i0 < 0:
                i0 += n_angle
            if i1 >= n_angle:
                i1 -= n_angle
            if j0 < 0:
                j0 += n_angle
            if j1 >= n_angle:
                j1 -= n_angle
            for sd in range(2):
                db = d0 + sd
                if db < 0:
                    db = 0  # the nearest pairs stay in the first bin
                if db >= n_dist:
                    continue
                w1 = wd if sd else 1.0 - wd
                base = db * n_angle
                w2 = w1 * (1.0 - wi)
                row[(base + i0) * n_angle + j0] += w2 * (1.0 - wj)
                row[(base + i0) * n_angle + j1] += w2 * wj
                w2 = w1 * wi
                row[(base + i1) * n_angle + j0] += w2 * (1.0 - wj)
                row[(base + i1) * n_angle + j1] += w2 * wj


@njit(cache=True, nogil=True)
def _popcount64(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@njit(cache=True, nogil=True)
def hamming_matrix(a, b):
    """All pairwise Hamming distances between two sets of codes as uint64 words.

    Parameters
    ----------
    a : uint64 (n, w)
    b : uint64 (m, w)

    Returns
    -------
    int32 (n, m)
    """
    n, w = a.shape
    m = b.shape[0]
    out = np.empty((n, m), np.int32)
    for i in range(n):
        for j in range(m):
            acc = np.uint64(0)
            for k in range(w):
                acc += _popcount64(a[i, k] ^ b[j, k])
            out[i, j] = np.int32(acc)
    return out


@njit(cache=True, nogil=True)
def nth_largest(values, n):
    """The ``n``-th largest of ``values`` (float32 (m,), 1 <= n <= m), by a min-heap of the best n.

    One pass and no copy of ``values`` (``np.partition`` copies the million person scores of the
    code stage, a fresh 4 MB array per search); most values fall below the heap's root at once.
    """
    heap = np.empty(n, values.dtype)
    size = 0
    for v in values:
        if size < n:  # sift up
            i = size
            size += 1
            while i > 0:
                parent = (i - 1) // 2
                if heap[parent] <= v:
                    break
                heap[i] = heap[parent]
                i = parent
            heap[i] = v
        elif v > heap[0]:  # replace the root, sift down
            i = 0
            while True:
                child = 2 * i + 1
                if child >= n:
                    break
                if child + 1 < n and heap[child + 1] < heap[child]:
                    child += 1
                if heap[child] >= v:
                    break
                heap[i] = heap[child]
                i = child
            heap[i] = v
    return heap[0]
