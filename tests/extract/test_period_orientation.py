"""The orientation the ridge-period stage reads: the coarse field where the fine one is incoherent."""

from __future__ import annotations

import numpy as np

from biomatch.extract.orientation import gradient_products, orientation_field, period_orientation
from biomatch.params import ExtractionParams


def _ridges_with_a_noisy_patch(seed=0):
    """Straight ridges at 30 degrees (period 9 px) over 200 x 200 px; a 50 px patch of blotches
    about a ridge wide (the ridges still there, weakly), as a wet or dry area is.  (White noise
    would not do: the structure tensor averages it away.)"""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:200, 0:200].astype(np.float32)
    theta = np.deg2rad(30.0)  # ridge direction, image axes (y down)
    # the grey level varies along the normal of the ridges
    img = np.cos(2 * np.pi * (-np.sin(theta) * xx + np.cos(theta) * yy) / 9.0).astype(np.float32)
    patch = (slice(75, 125), slice(75, 125))
    blotches = cv2.GaussianBlur(rng.normal(0, 1.0, (50, 50)).astype(np.float32), (0, 0), 2.0)
    img[patch] = 0.3 * img[patch] + 3.0 * blotches / blotches.std()
    mask = np.ones(img.shape, np.uint8)
    mask[:, :20] = 0  # off the print: never read
    return img, mask, theta, patch


def _angle_error(a, b):
    d = np.abs(a - b) % np.pi
    return np.minimum(d, np.pi - d)


def test_incoherent_areas_read_the_coarse_field_and_coherent_ones_keep_theirs():
    p = ExtractionParams()
    img, mask, truth, patch = _ridges_with_a_noisy_patch()
    products = gradient_products(img, mask, p)
    theta, coherence = orientation_field(img, mask, p, products)
    out = period_orientation(theta, coherence, products, mask, p)
    assert out.dtype == np.float32 and out.shape == theta.shape
    low = (coherence < p.period_coarse_below_coherence) & (mask > 0)
    assert low[patch].mean() > 0.8  # the patch is incoherent at the fine scale, the rest is not
    assert low.mean() < 0.1
    # where the fine field is coherent, or off the print, nothing changes
    assert np.array_equal(out[~low], theta[~low])
    # in the patch the period's orientation follows the ridges better than the fine field
    # (measured: median error 34 -> 19 degrees)
    inner = (slice(85, 115), slice(85, 115))
    assert np.median(_angle_error(out[inner], truth)) < 0.7 * np.median(_angle_error(theta[inner], truth))


def test_zero_switches_it_off():
    p = ExtractionParams(period_coarse_below_coherence=0.0)
    img, mask, _, _ = _ridges_with_a_noisy_patch(1)
    products = gradient_products(img, mask, p)
    theta, coherence = orientation_field(img, mask, p, products)
    assert period_orientation(theta, coherence, products, mask, p) is theta
