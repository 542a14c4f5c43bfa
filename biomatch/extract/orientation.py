"""Stage 2: ridge orientation field and its coherence (gradient structure tensor)."""

from __future__ import annotations

import numpy as np

from ..params import ExtractionParams
from .segmentation import _smooth

__all__ = ["orientation_field", "period_orientation", "gradient_products"]


def orientation_field(norm: np.ndarray, mask: np.ndarray, p: ExtractionParams, products=None):
    """Ridge orientation and coherence per pixel.

    Parameters
    ----------
    norm : float32 (h, w)
        Normalised image from :func:`~biomatch.extract.segmentation.normalise`.
    mask : uint8 (h, w)
        Foreground mask.
    products : tuple of three float32 (h, w), optional
        :func:`gradient_products` of ``norm`` and ``mask``, when the caller has them.

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
    gg = gradient_products(norm, mask, p) if products is None else products
    return _tensor_field(gg, p.orientation_sigma_px)


def period_orientation(theta: np.ndarray, coherence: np.ndarray, products, mask: np.ndarray,
                       p: ExtractionParams) -> np.ndarray:
    """The orientation the ridge-period stage reads: ``theta``, but where its coherence is below
    ``p.period_coarse_below_coherence`` on the print, the field averaged over
    ``p.period_orientation_sigma_px`` when that one is more coherent.

    Parameters
    ----------
    theta, coherence : float32 (h, w)
        :func:`orientation_field`.
    products : tuple of three float32 (h, w)
        :func:`gradient_products` they came from.
    mask : uint8 (h, w)
        Foreground mask.

    Returns
    -------
    float32 (h, w)
        Radians in ``[0, pi)``.

    Notes
    -----
    The period is measured along the normal of the ridges (Hong, Wan & Jain 1998's oriented
    window); where the ridges are broken, merged or noisy (wet, dry, worn skin; sensor noise) the
    fine field turns with the noise and the window runs along no ridge, so the block is judged
    aperiodic and leaves the print's mask.  A field over about twice the window -- the coarse
    level of hierarchical orientation estimates -- follows the ridge flow there, and only there:
    where the fine field is coherent (a clear print, a core or delta, whose turn the coarse
    field would smooth away) it is kept.  The enhancement and the minutiae keep the fine field.
    """
    low = (coherence < p.period_coarse_below_coherence) & (mask > 0)
    if not low.any():
        return theta
    k = int(round(np.sqrt(6.0) * p.period_orientation_sigma_px)) | 1
    # The coarse field only where it may be used: the same element-wise operations as
    # _tensor_field's (over every pixel they cost 6 ms of a 35 ms extraction; so, 1.8 ms).
    gxx, gyy, gxy = (_smooth(a, k)[low] for a in products)
    coarse, coarse_coherence = _orientation_coherence(gxx, gyy, gxy)
    out = theta.copy()
    out[low] = np.where(coarse_coherence > coherence[low], coarse, theta[low])
    return out


def gradient_products(norm: np.ndarray, mask: np.ndarray, p: ExtractionParams):
    """``gx^2, gy^2, gx gy`` (float32 (h, w) each) of the smoothed image, zero off the mask."""
    import cv2

    src = cv2.GaussianBlur(norm, (0, 0), p.gradient_sigma_px)
    gx = cv2.Sobel(src, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(src, cv2.CV_32F, 0, 1, ksize=3)
    m = mask.astype(np.float32)
    return gx * gx * m, gy * gy * m, gx * gy * m


def _tensor_field(products, sigma_px: float):
    """Orientation and coherence of the structure tensor smoothed over ``sigma_px``."""
    # Two box passes of width sqrt(6)*sigma have the variance of a Gaussian of that sigma.
    k = int(round(np.sqrt(6.0) * sigma_px)) | 1
    return _orientation_coherence(*(_smooth(a, k) for a in products))


def _orientation_coherence(gxx: np.ndarray, gyy: np.ndarray, gxy: np.ndarray):
    """Orientation (float32, [0, pi)) and coherence (float32, [0, 1]) of smoothed tensor components."""
    # Gradient direction doubled; ridges run perpendicular to the gradient.
    phi = 0.5 * np.arctan2(2.0 * gxy, gxx - gyy)
    theta = np.mod(phi + np.pi / 2, np.pi).astype(np.float32)
    den = gxx + gyy
    coh = np.sqrt((gxx - gyy) ** 2 + 4.0 * gxy**2) / np.maximum(den, 1e-6)
    return theta, np.clip(coh, 0.0, 1.0).astype(np.float32)
