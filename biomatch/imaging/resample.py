"""To the 500 dpi working resolution: resampling, and the read-convert-resample of a fingerprint."""

from __future__ import annotations

import os

import numpy as np

from ..errors import invalid
from ..params import WORKING_DPI
from .convert import to_grey8
from .limits import MAX_IMAGE_PIXELS, check_dpi
from .read import read_image

__all__ = ["to_working_resolution", "load_fingerprint"]


def to_working_resolution(grey: np.ndarray, dpi: float) -> np.ndarray:
    """Resample an 8-bit grey image from ``dpi`` to the 500 dpi working resolution.

    Area interpolation when shrinking (anti-aliased), cubic when enlarging.
    """
    import cv2

    dpi = check_dpi(dpi)
    if abs(dpi - WORKING_DPI) < 1e-6:
        return grey
    scale = WORKING_DPI / dpi
    h, w = grey.shape
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(grey, (nw, nh), interpolation=interp)


def load_fingerprint(image, dpi: float) -> np.ndarray:
    """Read (if a path) and normalise a fingerprint image to 8-bit grey at 500 dpi.

    Parameters
    ----------
    image : ndarray, str or path-like
        An array (see :func:`to_grey8`) or an image file, read as 8-bit grey by its codec
        (:func:`read_image` with ``mode="grey8"``).
    dpi : float
        Its resolution, 100-2000.

    Raises
    ------
    InvalidInputError
        Bad ``dpi``; an array of more than :data:`MAX_IMAGE_PIXELS` pixels, of the wrong shape or
        dtype; a path with a NUL byte.
    ImageError
        An unreadable file, or one over :data:`MAX_IMAGE_PIXELS` (refused from its header).
    """
    dpi = check_dpi(dpi)
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image, mode="grey8")
    elif isinstance(image, np.ndarray) and image.ndim >= 2 and image.shape[0] * image.shape[1] > MAX_IMAGE_PIXELS:
        # before any conversion, which would allocate in proportion
        raise invalid("image", f"at most {MAX_IMAGE_PIXELS} pixels", f"{image.shape[1]}x{image.shape[0]}")
    return to_working_resolution(to_grey8(image), dpi)
