"""8-bit grey from the pixels a reader or a caller gives: grey or BGR(A), 8 or 16 bits, floats."""

from __future__ import annotations

import numpy as np

from ..errors import invalid

__all__ = ["to_grey8"]


def to_grey8(image: np.ndarray) -> np.ndarray:
    """Convert a grey or colour image of 8 or 16 bits (or float in [0, 1]) to 8-bit grey.

    Parameters
    ----------
    image : ndarray, shape (h, w) or (h, w, 3|4)
        uint8, uint16 or float; colour channels in BGR(A) order (as OpenCV reads them).

    Returns
    -------
    ndarray of uint8, shape (h, w)
    """
    import cv2

    if not isinstance(image, np.ndarray):
        raise invalid("image", "a numpy array", type(image).__name__)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        elif image.dtype != np.uint8:
            image = _float_to_u8(image, "image")
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    if image.ndim != 2:
        raise invalid("image", "shape (h, w) or (h, w, 3|4)", image.shape)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        return _float_to_u8(image, "image")
    raise invalid("image.dtype", "uint8, uint16 or float", image.dtype)


def _float_to_u8(image: np.ndarray, name: str) -> np.ndarray:
    if not np.issubdtype(image.dtype, np.floating):
        raise invalid(f"{name}.dtype", "uint8, uint16 or float", image.dtype)
    if not np.all(np.isfinite(image)):
        raise invalid(name, "finite pixel values", "NaN or infinity")
    if image.size and (image.min() < 0 or image.max() > 1):
        raise invalid(name, "float pixels in [0, 1]", (float(image.min()), float(image.max())))
    return np.round(image * 255).astype(np.uint8)

