"""Conditions of the sensor: its noise and its transfer curve.

Per-pixel processes of the capture device, independent of the finger's scale (``dpi`` is
checked, not used); the ground-truth minutiae stay where they are.
"""

from __future__ import annotations

import numpy as np

from ._common import Param, set_up, to_uint8

NOISE = Param("sigma_grey", 20.0, 0.0, 128.0, "grey levels", "grey levels (Gaussian sigma)")
GAMMA = Param("exponent", 0.45, 0.2, 5.0, "gamma exponent", "gamma exponent")

NOISE_IMPULSE_PER_GREY = 0.0005   # impulse fraction per grey level of sigma (1% at 20)


def noise(image: np.ndarray, dpi: float, sigma_grey: float = NOISE.default, rng=0) -> np.ndarray:
    """Sensor noise: additive Gaussian noise plus impulse (dead and hot pixel) noise.

    Parameters
    ----------
    image : uint8 (h, w)
    dpi : float
        Unused (noise is per pixel); checked for consistency.
    sigma_grey : float
        Standard deviation of the Gaussian noise, grey levels (0-128; default 20: a signal-to-noise
        ratio of about 10 over a 200-level range, against 70.6 required of PIV-compliant scanners).
    rng : numpy Generator or int

    Returns
    -------
    uint8 (h, w)

    Notes
    -----
    A fraction ``0.0005 x sigma_grey`` of the pixels (1% at 20) is set to 0 or 255 with equal
    probability, as saturated or dead photosites of a worn sensor are.
    """
    image, _, sigma, rng = set_up(image, dpi, sigma_grey, rng, NOISE)
    out = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    p = NOISE_IMPULSE_PER_GREY * sigma
    if p > 0:
        u = rng.uniform(0.0, 1.0, image.shape)
        out[u < p / 2] = 0.0
        out[(u >= p / 2) & (u < p)] = 255.0
    return to_uint8(out)


def gamma(image: np.ndarray, dpi: float, exponent: float = GAMMA.default, rng=None) -> np.ndarray:
    """A different contrast (transfer) curve: ``255 (I / 255) ** exponent``.

    Parameters
    ----------
    image : uint8 (h, w)
    dpi : float
        Unused; checked for consistency.
    exponent : float
        Gamma exponent (0.2-5; default 0.45 = 1/2.2, a sensor that gamma-encodes its output as
        sRGB / Rec. 709 cameras do, read by software that expects a linear response; 2.2 is the
        opposite mismatch).
    rng : unused

    Returns
    -------
    uint8 (h, w)
        Quantised to 8 bits, so a steep curve merges grey levels at one end of the range.
    """
    image, _, g, _ = set_up(image, dpi, exponent, rng, GAMMA, random=False)
    lut = to_uint8(255.0 * (np.arange(256, dtype=np.float64) / 255.0) ** g)
    return lut[image]
