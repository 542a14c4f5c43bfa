"""numba kernels of contextual (oriented Gabor) enhancement."""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

# Lanes of the per-kernel-row partial sums (see gabor_filter, Notes).
_LANES = 8


def gabor_bank(n_angles: int, periods: np.ndarray, sigma_across: float, sigma_along: float,
               radius: int) -> np.ndarray:
    """Even-symmetric, zero-mean Gabor kernels tuned to ridge orientation and period.

    Returns
    -------
    float32 (n_angles, len(periods), 2*radius+1, 2*radius+1)
        Kernel ``[a, p]`` responds to ridges oriented at ``a * pi / n_angles``
        (image axes) with period ``periods[p]`` px; it is positive on a bright ridge.
    """
    r = np.arange(-radius, radius + 1, dtype=np.float64)
    yy, xx = np.meshgrid(r, r, indexing="ij")
    bank = np.zeros((n_angles, len(periods), 2 * radius + 1, 2 * radius + 1), np.float32)
    for a in range(n_angles):
        t = a * np.pi / n_angles
        along = xx * np.cos(t) + yy * np.sin(t)
        across = -xx * np.sin(t) + yy * np.cos(t)
        env = np.exp(-0.5 * (along**2 / sigma_along**2 + across**2 / sigma_across**2))
        for p, period in enumerate(periods):
            k = env * np.cos(2 * np.pi * across / period)
            k -= env * (k.sum() / env.sum())  # zero DC: flat regions give no response
            k /= np.abs(k).sum()
            bank[a, p] = k
    return bank


@intrinsic
def _fma(typingctx, a, b, c):
    """float32 ``a * b + c`` with one rounding (``llvm.fma``), whatever the compiler flags.

    float32 operands only: a float64 one is refused at compile time, not silently narrowed.
    """
    if not all(t == types.float32 for t in (a, b, c)):
        return None
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


@njit(cache=True, nogil=True)
def _pixel(img, ker, y, x, lanes):
    """Response of one pixel, the order of :func:`gabor_filter` with the border replicated."""
    h, w = img.shape
    k = ker.shape[0]
    r = k // 2
    n_lane = _LANES * (k // _LANES)
    s = np.float32(0.0)
    for i in range(k):
        yy = min(max(y + i - r, 0), h - 1)
        lanes[:] = 0.0
        lanes[0] = s
        for j in range(n_lane):
            lanes[j % _LANES] = _fma(ker[i, j], img[yy, min(max(x + j - r, 0), w - 1)], lanes[j % _LANES])
        s = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
        for j in range(n_lane, k):
            s = _fma(ker[i, j], img[yy, min(max(x + j - r, 0), w - 1)], s)
    return s


@njit(cache=True, nogil=True)
def gabor_filter(img, angle_idx, period_idx, mask, bank):
    """Filter each foreground pixel with the kernel of its own orientation and period.

    Parameters
    ----------
    img : float32 (h, w)
        Normalised image, ridges bright.
    angle_idx, period_idx : int32 (h, w)
        Index into ``bank`` per pixel.
    mask : uint8 (h, w)
        Pixels with 0 are left at 0.
    bank : float32 (na, np, k, k)

    Returns
    -------
    float32 (h, w)

    Notes
    -----
    Orientation and period change slowly, so neighbouring pixels of a row mostly share a
    kernel: each run of them is filtered kernel row by kernel row across the run, so the
    pixels' sums advance side by side instead of one ``k * k``-long dependent chain after
    another (about 40% less time on FVC2002 DB1_B).  Pixels within ``k // 2`` of the image
    edge read the edge pixel (replicated border).

    Every pixel's sum has one fixed order, kernel row by kernel row: the running sum enters
    lane 0 of 8 lanes, tap ``j < 8 * (k // 8)`` is added to lane ``j % 8`` (fused
    multiply-add), the lanes are added pairwise (``l + 4``, then ``l + 2``, then ``l + 1``)
    and the remaining taps follow one by one, fused.  This is the order the compiler gave
    the former pixel-by-pixel kernel (numba 0.68, AVX-512) under ``fastmath``, written out
    so that templates stay bit-identical; without ``fastmath`` it no longer depends on the
    compiler or the CPU.
    """
    h, w = img.shape
    k = bank.shape[2]
    r = k // 2
    # The run path spells out one block of lanes; other sizes go pixel by pixel.
    runs = _LANES <= k < 2 * _LANES
    out = np.zeros((h, w), np.float32)
    acc = np.zeros(w, np.float32)
    lanes = np.zeros(_LANES, np.float32)
    for y in range(h):
        inner_row = runs and r <= y < h - r
        x = 0
        while x < w:
            if mask[y, x] == 0:
                x += 1
                continue
            a = angle_idx[y, x]
            p = period_idx[y, x]
            x1 = x + 1
            while x1 < w and mask[y, x1] != 0 and angle_idx[y, x1] == a and period_idx[y, x1] == p:
                x1 += 1
            ker = bank[a, p]
            # [lo, hi): the run's pixels whose whole support lies inside the image.
            lo = min(max(x, r), x1) if inner_row else x1
            hi = max(lo, min(x1, w - r))
            acc[lo:hi] = 0.0
            for i in range(k if hi > lo else 0):
                row = y + i - r
                k0, k1, k2, k3 = ker[i, 0], ker[i, 1], ker[i, 2], ker[i, 3]
                k4, k5, k6, k7 = ker[i, 4], ker[i, 5], ker[i, 6], ker[i, 7]
                for t in range(lo, hi):
                    b = t - r
                    l0 = _fma(k0, img[row, b], acc[t])
                    l1 = k1 * img[row, b + 1]
                    l2 = k2 * img[row, b + 2]
                    l3 = k3 * img[row, b + 3]
                    l4 = k4 * img[row, b + 4]
                    l5 = k5 * img[row, b + 5]
                    l6 = k6 * img[row, b + 6]
                    l7 = k7 * img[row, b + 7]
                    s = ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))
                    for j in range(_LANES, k):
                        s = _fma(ker[i, j], img[row, b + j], s)
                    acc[t] = s
            out[y, lo:hi] = acc[lo:hi]
            for t in range(x, lo):
                out[y, t] = _pixel(img, ker, y, t, lanes)
            for t in range(hi, x1):
                out[y, t] = _pixel(img, ker, y, t, lanes)
            x = x1
    return out
