"""Stage 3: local ridge period (Hong, Wan & Jain 1998, oriented x-signature)."""

from __future__ import annotations

import numpy as np

from ..params import ExtractionParams
from . import _orientation_nb as nb

__all__ = ["ridge_period"]


def ridge_period(norm: np.ndarray, theta: np.ndarray, mask: np.ndarray, p: ExtractionParams):
    """Ridge period in pixels for every pixel.

    Blocks without a reliable estimate take the median of their reliable
    neighbours (grown outwards), and the whole map falls back to the print's median
    (or the textbook 500 dpi default) when nothing is reliable.

    Returns
    -------
    period : float32 (h, w)
        Ridge period in pixels at 500 dpi, within ``[ridge_period_min_px, ridge_period_max_px]``.
    block_period : float32 (bh, bw)
        The raw per-block estimates (0 = unreliable), for transparency.
    """
    import cv2

    b = p.block_size_px
    raw = nb.block_ridge_period(norm, theta, mask, b, 2 * b + 8, b,
                                p.ridge_period_min_px, p.ridge_period_max_px)
    valid = raw > 0
    fallback = float(np.median(raw[valid])) if valid.sum() >= 3 else p.ridge_period_default_px
    # Outlier rejection and smoothing: median of valid estimates in a (2r+1)^2 block window.
    out = nb.median_fill(raw, p.frequency_smooth_blocks, np.float32(fallback))
    bh, bw = raw.shape
    h, w = norm.shape
    full = cv2.resize(out, (bw * b, bh * b), interpolation=cv2.INTER_LINEAR)
    period = np.full((h, w), fallback, np.float32)
    period[: bh * b, : bw * b] = full
    if bh * b < h:
        period[bh * b:, : bw * b] = full[-1:, :]
    if bw * b < w:
        period[:, bw * b:] = period[:, bw * b - 1: bw * b] if bw else fallback
    return np.clip(period, p.ridge_period_min_px, p.ridge_period_max_px), raw
