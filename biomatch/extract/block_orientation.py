"""Stage: the block orientation field kept in the template (non-minutiae evidence)."""

from __future__ import annotations

import numpy as np

from ..template import NO_PRINT, ORIENTATION_BLOCK_PX, grid_shape

__all__ = ["block_orientations"]


def block_orientations(theta: np.ndarray, coherence: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Ridge orientation per 16 x 16 px block, quantised to whole degrees.

    Parameters
    ----------
    theta : float32 (h, w)
        Ridge orientation in radians in ``[0, pi)``, image axes (x right, y down), from
        :func:`~biomatch.extract.orientation.orientation_field`.
    coherence : float32 (h, w)
        Its coherence, 0-1 (the weight of each pixel).
    mask : uint8 (h, w)
        The final foreground mask.

    Returns
    -------
    uint8 (ceil(h / 16), ceil(w / 16))
        Degrees 0-179 (image axes), or :data:`~biomatch.template.NO_PRINT` (255) where fewer than
        half of the block's 256 pixels are print (blocks past the image edge count as no print).

    Notes
    -----
    The block orientation is the direction of the coherence-weighted mean of the doubled-angle
    vectors ``(cos 2 theta, sin 2 theta)`` of its print pixels: orientations are defined modulo
    pi, so they are averaged as doubled angles (Kass & Witkin 1987).  One degree of quantisation
    moves cos 2(difference) by at most 3e-4, far below the ridge flow's own noise.
    """
    import cv2

    b = ORIENTATION_BLOCK_PX
    h, w = theta.shape
    rows, cols = grid_shape(w, h)
    # Block sums as block means (cv2.resize INTER_AREA at an integer factor averages each block
    # exactly), on float32 maps padded with zeros: about 0.5 ms for a 400 x 400 image.
    pad = dict(top=0, bottom=rows * b - h, left=0, right=cols * b - w, borderType=cv2.BORDER_CONSTANT, value=0)
    m = cv2.copyMakeBorder((mask > 0).astype(np.float32), **pad)
    wgt = m * cv2.copyMakeBorder(coherence.astype(np.float32), **pad)
    t2 = 2.0 * cv2.copyMakeBorder(theta.astype(np.float32), **pad)

    def block_mean(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a, (cols, rows), interpolation=cv2.INTER_AREA).astype(np.float64)

    sx, sy = block_mean(wgt * np.cos(t2)), block_mean(wgt * np.sin(t2))
    deg = np.mod(np.degrees(0.5 * np.arctan2(sy, sx)), 180.0)
    grid = (np.floor(deg + 0.5) % 180).astype(np.uint8)
    grid[block_mean(m) < 0.5] = NO_PRINT
    return grid
