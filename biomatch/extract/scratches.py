"""Stage 1b: light scratches and creases across the print, set to "no evidence"."""

from __future__ import annotations

import numpy as np

from ..params import ExtractionParams

__all__ = ["scratch_mask", "neutralise_scratches"]


def scratch_mask(norm: np.ndarray, mask: np.ndarray, p: ExtractionParams) -> np.ndarray:
    """Pixels of long, thin light lines inside the print (abrasion scratches, creases, cuts).

    Parameters
    ----------
    norm : float32 (h, w)
        Normalised image from :func:`~biomatch.extract.segmentation.normalise` (ridges bright,
        about unit variance over two ridge periods).
    mask : uint8 (h, w)
        Foreground mask.

    Returns
    -------
    bool (h, w)
        True on the scratches' pixels (with their one-pixel blurred edge).

    Notes
    -----
    A ridge wave of unit variance has its valley floors at -sqrt(2); a pixel more than
    ``scratch_depth_sigma`` (3) local standard deviations below the mean is lighter than any
    valley can be -- skin that did not touch the sensor, or a line cut into the ridges.  Such
    pixels count as a scratch only when they join into a line at least ``scratch_min_length_px``
    long (1 mm: several ridges crossed) and at most ``scratch_max_width_ratio`` as wide as long;
    isolated light spots (pores, dust) stay as they are -- on FVC2002 DB1-4_B not one template
    changes.  The print's own edge is light on one side, so pixels within ``scratch_border_px``
    of the mask's border are never scratch.  Why it matters: on a worn finger the ridge relief,
    hence the contrast, is a fraction of an intact one's, while a scratch is as light as the
    background, so the local normalisation leaves it several times stronger than the ridges and
    the oriented filters of the later stages draw it as a line of spurious ridge endings.
    """
    import cv2

    if p.scratch_depth_sigma <= 0:
        return np.zeros(norm.shape, bool)
    light = norm < -p.scratch_depth_sigma
    if not light.any():  # most prints: nothing that light, nothing more to do
        return np.zeros(norm.shape, bool)
    r = int(round(p.scratch_border_px))
    inner = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) if r > 0 else mask
    light = (light & (inner > 0)).astype(np.uint8)
    if not light.any():
        return np.zeros(norm.shape, bool)
    # Pieces of one line a pixel apart (noise along it) are joined before their shape is judged.
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cv2.dilate(light, np.ones((3, 3), np.uint8)),
                                                           connectivity=8)
    keep = np.zeros(n, bool)
    for c in range(1, n):
        x, y, w, h, area = stats[c]
        # Cheap rejection first: a line of length L spans at least L / sqrt(2) on one side.
        if area < 5 or max(w, h) * np.sqrt(2.0) < p.scratch_min_length_px:
            continue
        ys, xs = np.nonzero(labels[y:y + h, x:x + w] == c)
        (_, _), (a, b), _ = cv2.minAreaRect(np.stack([xs, ys], 1).astype(np.float32))
        length, width = max(a, b), min(a, b)
        keep[c] = length >= p.scratch_min_length_px and width <= p.scratch_max_width_ratio * length
    line = keep[labels] & (light > 0)
    return cv2.dilate(line.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))) > 0


def neutralise_scratches(norm: np.ndarray, mask: np.ndarray, p: ExtractionParams) -> tuple[np.ndarray, np.ndarray]:
    """``norm`` with its scratch pixels set to 0 (neither ridge nor valley) and the scratch mask.

    Returns
    -------
    norm : float32 (h, w)
        A copy where scratches were found, else ``norm`` itself.
    scratches : bool (h, w)

    Notes
    -----
    0 is the local mean: the orientation, period and Gabor stages then see a short gap in each
    ridge the line crossed, which their windows (several pixels along the ridge) bridge, instead
    of a light line to follow.
    """
    s = scratch_mask(norm, mask, p)
    if not s.any():
        return norm, s
    return np.where(s, np.float32(0), norm).astype(np.float32, copy=False), s
