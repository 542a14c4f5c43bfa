"""Stage 2: ridge orientation field and its coherence (gradient structure tensor)."""

from __future__ import annotations

import numpy as np

from ..params import ExtractionParams
from .segmentation import _smooth

__all__ = ["orientation_field"]


def orientation_field(norm: np.ndarray, mask: np.ndarray, p: ExtractionParams):
    """Ridge orientation and coherence per pixel.

    Parameters
    ----------
    norm : float32 (h, w)
        Normalised image from :func:`~biomatch.extract.segmentation.normalise`.
    mask : uint8 (h, w)
        Foreground mask.

    Returns
    -------
    theta : float32 (h, w)
        Ridge orientation in radians in ``[0, pi)``, image axes (x right, y down).
    coherence : float32 (h, w)
        ``|lambda1 - lambda2| / (lambda1 + lambda2)`` of the smoothed structure
        tensor, 0 (isotropic) to 1 (perfectly parallel ridges).

    Notes
    -----
    Averaging the squared gradients (Kass & Witkin 1987; Bazen & Gerez 2002) over a
    window of roughly two ridge periods removes the sign ambiguity of gradients on
    the two flanks of a ridge.
    """
    import cv2

    src = cv2.GaussianBlur(norm, (0, 0), p.gradient_sigma_px)
    gx = cv2.Sobel(src, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(src, cv2.CV_32F, 0, 1, ksize=3)
    m = mask.astype(np.float32)
    # Two box passes of width sqrt(6)*sigma have the variance of a Gaussian of that sigma.
    k = int(round(np.sqrt(6.0) * p.orientation_sigma_px)) | 1
    gxx = _smooth(gx * gx * m, k)
    gyy = _smooth(gy * gy * m, k)
    gxy = _smooth(gx * gy * m, k)
    # Gradient direction doubled; ridges run perpendicular to the gradient.
    phi = 0.5 * np.arctan2(2.0 * gxy, gxx - gyy)
    theta = np.mod(phi + np.pi / 2, np.pi).astype(np.float32)
    den = gxx + gyy
    coh = np.sqrt((gxx - gyy) ** 2 + 4.0 * gxy**2) / np.maximum(den, 1e-6)
    return theta, np.clip(coh, 0.0, 1.0).astype(np.float32)
