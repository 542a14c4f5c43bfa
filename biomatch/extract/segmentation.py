"""Stage 1: contrast normalisation and the foreground (segmentation) mask."""

from __future__ import annotations

import numpy as np

from ..params import WORKING_DPI, ExtractionParams

__all__ = ["normalise", "segment", "refine_mask", "widen_small_print", "ridge_band_energy", "sensor_noise_grey"]


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
    """Foreground mask: where ridges stand clear of the sensor's noise, or contrast is strong.

    Parameters
    ----------
    grey : uint8 (h, w)
        Fingerprint at 500 dpi.

    Returns
    -------
    uint8 (h, w)
        1 on the print, 0 on the background.

    Notes
    -----
    A pixel is foreground by either of two tests, then the mask is cleaned to one solid region:

    - *ridges*: the local energy of the image band-passed to ridge periods
      (:func:`ridge_band_energy`) is ``segment_snr_min`` times what the sensor's own noise
      gives (:func:`sensor_noise_grey`) and ``segment_relative_min`` of the print's strongest
      ridges.  The band excludes the edge of a dark print on a light background, uneven
      illumination and pixel noise, so a worn, dry or low-contrast print whose grey levels
      barely move is still found;
    - *contrast*: the local grey-level spread is ``segment_relative_min`` of the image's
      strongest (and at least ``segment_min_contrast_grey``): a clear print's whole contact
      area, even where a ridge is smudged.  On a photo or a page this takes in the whole
      textured region, so that its few ridge-like patches are judged in context (ridge
      regularity, :func:`~biomatch.extract.quality.ridge_fraction`) and refused.
    """
    import cv2

    energy, noise = ridge_band_energy(grey, p)
    k = p.block_size_px
    fg = energy > max(p.segment_snr_min * noise, p.segment_relative_min * _p95(energy), p.segment_min_band_grey)
    img = grey.astype(np.float32)
    mean = cv2.blur(img, (k, k))
    std = np.sqrt(np.maximum(cv2.blur(img * img, (k, k)) - mean * mean, 0.0))
    fg |= std > max(p.segment_relative_min * _p95(std), p.segment_min_contrast_grey)
    fg = fg.astype(np.uint8)
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


def _p95(a: np.ndarray) -> float:
    """95th percentile of a smooth map, read on every other row and column (4x cheaper)."""
    sub = a[::2, ::2].ravel()
    return float(np.partition(sub, int(0.95 * (sub.size - 1)))[int(0.95 * (sub.size - 1))])


def ridge_band_energy(grey: np.ndarray, p: ExtractionParams) -> tuple[np.ndarray, float]:
    """Local RMS of the image band-passed to ridge periods, and what noise alone would give.

    Parameters
    ----------
    grey : uint8 (h, w)
        Fingerprint at 500 dpi.

    Returns
    -------
    energy : float32 (h, w)
        RMS (grey levels), over a window of one block's extent, of the difference of two
        near-Gaussian low-passes whose sigmas are about a quarter of the shortest and of the
        longest ridge period: it passes periods of 5-15 px with a gain of about 0.3-0.7 and
        stops pixel noise and shading.
    noise : float
        The energy the sensor's noise alone produces through the same band-pass (grey levels).

    Notes
    -----
    Every low-pass is two passes of a box filter (:func:`_smooth`, O(1) per pixel), whose
    sigma is ``sqrt((k^2 - 1) / 6)`` for width ``k``: about 2 ms for a 400 x 400 image.
    """
    f = grey.astype(np.float32)
    k_fine = _box_width(p.ridge_period_min_px / 4.0)
    k_coarse = _box_width(p.ridge_period_max_px / 4.0)
    band = _smooth(f, k_fine) - _smooth(f, k_coarse)
    # Window: the second moment of a block (sigma = block / sqrt(12)), so that the mask's edge
    # follows the print's as closely as a block-wise estimate would.
    energy = np.sqrt(np.maximum(_smooth(band * band, _box_width(p.block_size_px / np.sqrt(12.0))), 0.0))
    # White noise of std s leaves std s * ||kernel||_2 through a linear filter.
    impulse = np.zeros((4 * k_coarse + 1,) * 2, np.float32)
    impulse[2 * k_coarse, 2 * k_coarse] = 1.0
    k_band = _smooth(impulse, k_fine) - _smooth(impulse, k_coarse)
    noise = sensor_noise_grey(grey, p) * float(np.sqrt((k_band * k_band).sum()))
    return energy.astype(np.float32), noise


def _box_width(sigma_px: float) -> int:
    """Odd width of the box whose two passes (:func:`_smooth`) have about this sigma."""
    return max(1, int(round(np.sqrt(6.0 * sigma_px**2 + 1.0))) | 1)


def sensor_noise_grey(grey: np.ndarray, p: ExtractionParams) -> float:
    """Standard deviation (grey levels) of the sensor's pixel noise.

    The finest-scale residual (image minus its 3 x 3 mean) holds the pixel noise and little of
    ridges whose period is at least 5 px; its mean absolute value is taken per block and the
    quietest fifth of the blocks is used, where ridge edges leak least.
    """
    import cv2

    f = grey.astype(np.float32)
    resid = np.abs(f - cv2.blur(f, (3, 3), borderType=cv2.BORDER_REFLECT))
    b = p.block_size_px
    h, w = resid.shape
    bh, bw = h // b, w // b
    if bh == 0 or bw == 0:
        return 0.0
    per_block = cv2.resize(resid[: bh * b, : bw * b], (bw, bh), interpolation=cv2.INTER_AREA)
    # Gaussian noise of std s: E|x| = s sqrt(2 / pi), and the residual filter (delta minus the
    # 3 x 3 mean) passes it with gain sqrt(1 - 2/9 + 9/81) = sqrt(8/9).
    return float(np.percentile(per_block, 20) * np.sqrt(np.pi / 2.0) / np.sqrt(8.0 / 9.0))


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
    if p.min_ridge_fraction_local <= 0:
        return mask
    return mask & _per_pixel(_ridge_blocks(block_period, p), mask.shape, p.block_size_px)


def widen_small_print(mask: np.ndarray, refined: np.ndarray, block_period: np.ndarray,
                      p: ExtractionParams) -> np.ndarray:
    """The refined mask and, on a small print, the blocks bordering its ridge area.

    Parameters
    ----------
    mask : uint8 (h, w)
        Foreground of :func:`segment`.
    refined : uint8 (h, w)
        ``refine_mask(mask, block_period, p)``.
    block_period : float32 (bh, bw)
        Per-block ridge period, 0 where the block shows no periodic pattern.

    Returns
    -------
    uint8 (h, w)
        ``refined`` itself when it covers at least ``small_print_area_mm2``; otherwise
        ``refined`` plus the pixels of the blocks next to its kept blocks that lie at least
        ``small_print_edge_inset_px`` inside ``mask``.

    Notes
    -----
    :func:`refine_mask` drops every block whose 3 x 3 neighbourhood is not periodic: at a
    print's sharp edge a ring of one or two blocks, at cores, deltas and tightly curved ridges
    whole patches.  On a full print that costs a few minutiae among dozens, and the ring would
    bring in the false endings of a fading edge; on a small contact area (a light touch, a
    fingertip crop, a dry patchy print) the ring is a large share of all the evidence there is.
    The inset keeps the added pixels off the band where :func:`segment`'s windows (reach
    ~10 px) smear the print's edge outwards.
    """
    import cv2

    if p.min_ridge_fraction_local <= 0 or p.small_print_area_mm2 <= 0:
        return refined
    area_mm2 = float(np.count_nonzero(refined)) * (25.4 / WORKING_DPI) ** 2
    if area_mm2 >= p.small_print_area_mm2:
        return refined
    keep = _ridge_blocks(block_period, p)
    ring = cv2.dilate(keep, np.ones((3, 3), np.uint8)) & (1 - keep)
    r = int(round(p.small_print_edge_inset_px))
    inner = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) if r > 0 else mask
    return refined | (_per_pixel(ring, mask.shape, p.block_size_px) & inner)


def _ridge_blocks(block_period: np.ndarray, p: ExtractionParams) -> np.ndarray:
    """uint8 (bh, bw): 1 where at least ``min_ridge_fraction_local`` of the block's 3 x 3
    neighbourhood is periodic."""
    import cv2

    valid = (block_period > 0).astype(np.float32)
    # The fraction counts only blocks that exist: at the image edge a 3x3 neighbourhood has
    # 4 or 6 blocks, not 9 (the print often touches the edge of narrow sensors).
    present = cv2.blur(np.ones_like(valid), (3, 3), borderType=cv2.BORDER_CONSTANT)
    local = cv2.blur(valid, (3, 3), borderType=cv2.BORDER_CONSTANT) / present
    return (local >= p.min_ridge_fraction_local).astype(np.uint8)


def _per_pixel(blocks: np.ndarray, shape: tuple[int, int], b: int) -> np.ndarray:
    """A block map (bh, bw) spread to pixels (h, w); pixels beyond the last whole block (h % b
    rows, w % b columns) follow the nearest block."""
    bh, bw = blocks.shape
    rows = np.minimum(np.arange(shape[0]) // b, bh - 1)
    cols = np.minimum(np.arange(shape[1]) // b, bw - 1)
    return blocks[rows[:, None], cols[None, :]]
