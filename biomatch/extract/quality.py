"""Stage 8: per-minutia and whole-print quality."""

from __future__ import annotations

import numpy as np

from ..params import ExtractionParams

__all__ = ["minutia_quality", "print_quality", "ridge_fraction"]


def minutia_quality(x, y, coherence_smooth, border_dist, p: ExtractionParams) -> np.ndarray:
    """Quality 0-100 of each minutia: local ridge coherence, damped near the border.

    Returns
    -------
    uint8 (n,)
    """
    if len(x) == 0:
        return np.zeros(0, np.uint8)
    coh = coherence_smooth[y, x]
    border = np.clip(border_dist[y, x] / (3.0 * p.border_margin_px), 0.0, 1.0)
    q = 100.0 * np.clip(coh / 0.7, 0.0, 1.0) * (0.5 + 0.5 * border)
    return np.clip(np.rint(q), 1, 100).astype(np.uint8)


def ridge_fraction(block_period: np.ndarray, mask: np.ndarray, block: int) -> float:
    """Fraction of foreground blocks that show a periodic ridge pattern (0-1).

    Fingerprints at the right resolution score 0.65-0.97; faces, text, latent
    backgrounds and prints given at the wrong dpi score below 0.2.
    """
    centres = mask[block // 2::block, block // 2::block][: block_period.shape[0], : block_period.shape[1]]
    fg = centres > 0
    return float((block_period[fg] > 0).mean()) if fg.any() else 0.0


def print_quality(mask: np.ndarray, coherence: np.ndarray, ridges: float, n_minutiae: int,
                  min_coherence: float = 0.0) -> int:
    """Whole-print quality 0-100: usable area times ridge clarity times ridge regularity.

    A print smaller than about 2.8 x 2.8 mm, without a periodic ridge pattern over
    at least 30% of its area, with a mean ridge-flow coherence below ``min_coherence``
    (isotropic noise), or with no minutiae, scores 0: there is no usable print (or the
    resolution given is wrong).
    """
    area = float(mask.sum())
    if area < 3000 or n_minutiae == 0 or ridges < 0.3:  # 3000 px at 500 dpi is about 2.8 x 2.8 mm
        return 0
    clarity = float(np.mean(coherence[mask > 0]))
    if clarity < min_coherence:
        return 0
    size = min(1.0, area / 60000.0)  # 60000 px: a typical 12 x 12 mm contact area
    regular = min(1.0, ridges / 0.8)
    return int(np.clip(round(100 * min(1.0, clarity / 0.6) * (0.4 + 0.6 * size) * regular), 1, 100))
