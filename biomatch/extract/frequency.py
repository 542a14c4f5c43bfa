"""Stage 3: local ridge period (Hong, Wan & Jain 1998, oriented x-signature)."""

from __future__ import annotations

import numpy as np

from ..params import ExtractionParams
from . import _orientation_nb as nb

__all__ = ["ridge_period"]


def ridge_period(norm: np.ndarray, theta: np.ndarray, mask: np.ndarray, p: ExtractionParams,
                 coherence: np.ndarray | None = None):
    """Ridge period in pixels for every pixel.

    A block is periodic when the autocorrelation of its x-signature peaks above
    ``ridge_peak_min`` at a lag in the ridge period range.  With ``coherence`` given, a weaker
    peak (above ``ridge_weak_peak_min``) also makes a block periodic where the ridge flow is
    oriented (block coherence at least ``ridge_weak_coherence_min``): dry, wet and worn skin
    break or merge ridges and sink the peak below the strict bar over whole regions of a
    clear print (beaded ridges under a wet finger: periodic in 15-22% of their blocks instead
    of ~40%), which the mask then cut away; sensor noise gives weak peaks too, but with
    isotropic gradients (block coherence 0.06-0.09, against 0.2-0.5 on degraded ridges).
    The period map itself rests on the strictly periodic blocks: a weak peak says that a
    block holds ridges more surely than it gives their spacing (measured: periods from weak
    blocks too made the dry, wet and worn conditions worse, not better).
    Blocks without a reliable estimate take the median of their reliable
    neighbours (grown outwards), and the whole map falls back to the print's median
    (or the textbook 500 dpi default) when nothing is reliable.

    Returns
    -------
    period : float32 (h, w)
        Ridge period in pixels at 500 dpi, within ``[ridge_period_min_px, ridge_period_max_px]``.
    block_period : float32 (bh, bw)
        The raw per-block estimates (0 = not periodic), weakly periodic blocks included: what
        the mask refinement counts.
    weak : bool (bh, bw)
        The weakly periodic blocks among them (none without ``coherence``).
    """
    import cv2

    b = p.block_size_px
    weak_bar = p.ridge_peak_min if coherence is None else p.ridge_weak_peak_min
    raw, weak = nb.block_ridge_period(norm, theta, mask, b, 2 * b + 8, b, p.ridge_period_min_px,
                                      p.ridge_period_max_px, p.ridge_peak_min, weak_bar)
    bh, bw = raw.shape
    if weak.any():
        block_coherence = cv2.resize(coherence[: bh * b, : bw * b], (bw, bh), interpolation=cv2.INTER_AREA)
        refused = weak & (block_coherence < p.ridge_weak_coherence_min)
        raw = np.where(refused, np.float32(0), raw)
        weak &= ~refused
    strict = np.where(weak, np.float32(0), raw)
    valid = strict > 0
    fallback = float(np.median(strict[valid])) if valid.sum() >= 3 else p.ridge_period_default_px
    # Outlier rejection and smoothing: median of valid estimates in a (2r+1)^2 block window.
    out = nb.median_fill(strict, p.frequency_smooth_blocks, np.float32(fallback))
    h, w = norm.shape
    full = cv2.resize(out, (bw * b, bh * b), interpolation=cv2.INTER_LINEAR)
    period = np.full((h, w), fallback, np.float32)
    period[: bh * b, : bw * b] = full
    if bh * b < h:
        period[bh * b:, : bw * b] = full[-1:, :]
    if bw * b < w:
        period[:, bw * b:] = period[:, bw * b - 1: bw * b] if bw else fallback
    return np.clip(period, p.ridge_period_min_px, p.ridge_period_max_px), raw, weak
