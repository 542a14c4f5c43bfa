"""Stage 1: contrast normalisation and the foreground (segmentation) mask."""

from __future__ import annotations

import numpy as np

from ..params import ExtractionParams

__all__ = ["normalise", "segment", "refine_mask"]


def normalise(grey: np.ndarray, p: ExtractionParams) -> np.ndarray:
    """Local zero-mean, unit-variance image with ridges bright.

    Parameters
    ----------
    grey : uint8 (h, w)
        Fingerprint at 500 dpi, ridges dark.

    Returns
    -------
    float32 (h, w)
        Normalised over a Gaussian window of about two ridge periods, so that dry,
        wet and uneven contact regions enter the later stages with the same contrast.
    """
    img = 255.0 - grey.astype(np.float32)
    k = 2 * p.block_size_px + 1
    mean = _smooth(img, k)
    centred = img - mean
    var = _smooth(centred * centred, k)
    return centred / np.sqrt(var + 25.0)  # +25 (std 5 grey levels): flat areas stay near 0


def _smooth(a: np.ndarray, k: int) -> np.ndarray:
    """Two passes of a k x k box filter: close to a Gaussian, O(1) per pixel."""
    import cv2

    return cv2.blur(cv2.blur(a, (k, k), borderType=cv2.BORDER_REFLECT), (k, k),
                    borderType=cv2.BORDER_REFLECT)


def segment(grey: np.ndarray, p: ExtractionParams) -> np.ndarray:
    """Foreground mask: blocks with ridge contrast, cleaned to one solid region.

    Parameters
    ----------
    grey : uint8 (h, w)
        Fingerprint at 500 dpi.

    Returns
    -------
    uint8 (h, w)
        1 on the print, 0 on the background.
    """
    import cv2

    img = grey.astype(np.float32)
    k = p.block_size_px
    mean = cv2.blur(img, (k, k))
    std = np.sqrt(np.maximum(cv2.blur(img * img, (k, k)) - mean * mean, 0.0))
    # Relative threshold: a fraction of the contrast of the print's best areas, with an
    # absolute floor so that a blank or constant image yields no foreground at all.
    ref = float(np.percentile(std, 95))
    thr = max(p.segment_std_min * ref * 3.0, p.segment_min_contrast_grey)
    fg = (std > thr).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k + 1, k + 1))
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, kernel)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.zeros_like(fg)
    # Keep the largest region: a finger is one connected patch.
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    fg = (labels == largest).astype(np.uint8)
    # Fill holes (dirt, pores, scars inside the print are not background).
    # Background reachable from the image edge stays background; the rest is filled.
    h, w = fg.shape
    flood = np.pad(fg, 1)
    ff_mask = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(flood, ff_mask, (0, 0), 2)
    return (flood[1:-1, 1:-1] != 2).astype(np.uint8)


def refine_mask(mask: np.ndarray, block_period: np.ndarray, p: ExtractionParams) -> np.ndarray:
    """Drop foreground where no periodic ridge pattern is found around a block.

    Parameters
    ----------
    mask : uint8 (h, w)
    block_period : float32 (bh, bw)
        Per-block ridge period, 0 where the block shows no periodic pattern.

    Returns
    -------
    uint8 (h, w)
        The mask without noisy, ridge-less regions (contrast without ridges: smudges,
        latent backgrounds, sensor noise), whose minutiae would all be false.
    """
    import cv2

    if p.min_ridge_fraction_local <= 0:
        return mask
    b = p.block_size_px
    bh, bw = block_period.shape
    valid = (block_period > 0).astype(np.float32)
    # The fraction counts only blocks that exist: at the image edge a 3x3 neighbourhood has
    # 4 or 6 blocks, not 9 (the print often touches the edge of narrow sensors).
    present = cv2.blur(np.ones_like(valid), (3, 3), borderType=cv2.BORDER_CONSTANT)
    local = cv2.blur(valid, (3, 3), borderType=cv2.BORDER_CONSTANT) / present
    keep = (local >= p.min_ridge_fraction_local).astype(np.uint8)
    h, w = mask.shape
    # Pixels beyond the last whole block (h % b rows, w % b columns) follow the nearest block.
    rows = np.minimum(np.arange(h) // b, bh - 1)
    cols = np.minimum(np.arange(w) // b, bw - 1)
    return mask & keep[rows[:, None], cols[None, :]]
