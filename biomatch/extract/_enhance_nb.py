"""numba kernels of contextual (oriented Gabor) enhancement."""

from __future__ import annotations

import numpy as np
from numba import njit


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


@njit(cache=True, nogil=True, fastmath=True)
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
    """
    h, w = img.shape
    k = bank.shape[2]
    r = k // 2
    out = np.zeros((h, w), np.float32)
    for y in range(h):
        for x in range(w):
            if mask[y, x] == 0:
                continue
            ker = bank[angle_idx[y, x], period_idx[y, x]]
            s = np.float32(0.0)
            if r <= y < h - r and r <= x < w - r:
                for i in range(k):
                    row = y + i - r
                    for j in range(k):
                        s += ker[i, j] * img[row, x + j - r]
            else:
                for i in range(k):
                    yy = min(max(y + i - r, 0), h - 1)
                    for j in range(k):
                        xx = min(max(x + j - r, 0), w - 1)
                        s += ker[i, j] * img[yy, xx]
            out[y, x] = s
    return out
