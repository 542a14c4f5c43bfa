"""Stage 8: per-minutia and whole-print quality."""

from __future__ import annotations

import numpy as np

from ..params import ExtractionParams

__all__ = ["minutia_quality", "print_quality"]


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


def print_quality(mask: np.ndarray, coherence: np.ndarray, n_minutiae: int) -> int:
    """Whole-print quality 0-100: usable area times ridge clarity.

    A print smaller than about 6 x 6 mm, with no clear ridge flow or no minutiae,
    scores 0.
    """
    area = float(mask.sum())
    if area < 3000 or n_minutiae == 0:  # 3000 px at 500 dpi is about 2.8 x 2.8 mm
        return 0
    clarity = float(np.mean(coherence[mask > 0]))
    size = min(1.0, area / 60000.0)  # 60000 px: a typical 12 x 12 mm contact area
    return int(np.clip(round(100 * min(1.0, clarity / 0.6) * (0.4 + 0.6 * size)), 1, 100))
