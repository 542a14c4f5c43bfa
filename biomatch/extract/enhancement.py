"""Stage 4: contextual enhancement with oriented Gabor filters, then binarisation."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..params import ExtractionParams
from . import _enhance_nb as nb

__all__ = ["enhance", "binarise"]

_PERIOD_STEP_PX = 0.5


@lru_cache(maxsize=8)
def _bank(p: ExtractionParams):
    periods = np.arange(p.ridge_period_min_px, p.ridge_period_max_px + 1e-6, _PERIOD_STEP_PX)
    return periods, nb.gabor_bank(p.gabor_angle_steps, periods, p.gabor_sigma_across_px,
                                  p.gabor_sigma_along_px, p.gabor_radius_px)


def enhance(norm: np.ndarray, theta: np.ndarray, period: np.ndarray, mask: np.ndarray,
            p: ExtractionParams) -> np.ndarray:
    """Filter every foreground pixel with a Gabor kernel tuned to its orientation and period.

    Returns
    -------
    float32 (h, w)
        Enhanced image: positive on ridges, negative in valleys, 0 off the mask.
    """
    periods, bank = _bank(p)
    n_a = p.gabor_angle_steps
    a_idx = (np.rint(theta * (n_a / np.pi)).astype(np.int32)) % n_a
    p_idx = np.clip(np.rint((period - periods[0]) / _PERIOD_STEP_PX), 0, len(periods) - 1).astype(np.int32)
    return nb.gabor_filter(np.ascontiguousarray(norm, np.float32), a_idx, p_idx, mask, bank)


def binarise(enhanced: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Ridge pixels (uint8 1) where the enhanced image is positive inside the mask."""
    return ((enhanced > 0) & (mask > 0)).astype(np.uint8)
