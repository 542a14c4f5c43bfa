"""Segmentation: faint prints are found, the sensor's noise is measured, shading is not a print."""

from __future__ import annotations

import numpy as np
import pytest

from biomatch.datasets.degrade import apply_condition, condition_rng
from biomatch.extract import extract
from biomatch.extract.segmentation import ridge_band_energy, segment, sensor_noise_grey
from biomatch.imaging import load_fingerprint
from biomatch.params import ExtractionParams

from _util import need_dataset


def _faint_print_on_shading(contrast_grey: float, noise_grey: float, seed: int = 0):
    """An elliptical patch of 9 px ridges of the given amplitude, darker than a shaded
    background (as a print on a capacitive sensor), with Gaussian sensor noise."""
    rng = np.random.default_rng(seed)
    h, w = 320, 300
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    inside = ((xx - 170) / 90) ** 2 + ((yy - 160) / 120) ** 2 <= 1.0
    ridges = contrast_grey * np.cos(2 * np.pi * (xx * 0.8 + yy * 0.6) / 9.0)
    shading = 150 + 20 * (xx / w) - 30 * inside  # the print is darker than the background
    img = shading + np.where(inside, ridges, 0.0) + rng.normal(0, noise_grey, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8), inside


@pytest.mark.parametrize("sigma", [2.0, 5.0, 20.0])
def test_sensor_noise_is_measured(sigma):
    rng = np.random.default_rng(1)
    img = np.clip(128 + rng.normal(0, sigma, (300, 300)), 0, 255).astype(np.uint8)
    p = ExtractionParams()
    assert sensor_noise_grey(img, p) == pytest.approx(sigma, rel=0.1)
    energy, noise = ridge_band_energy(img, p)
    # The predicted band energy of noise alone is what the noise actually gives.
    assert float(np.median(energy)) == pytest.approx(noise, rel=0.15)
    if sigma < p.segment_min_contrast_grey:  # stronger noise passes the contrast test ...
        assert segment(img, p).sum() == 0
    t = extract(img, 500)  # ... but its flow is isotropic: no print
    assert len(t) == 0 and t.quality == 0


@pytest.mark.parametrize("contrast", [4.0, 8.0, 30.0])
def test_faint_print_is_segmented_whole(contrast):
    """Ridges 4 grey levels in amplitude under 2.5 grey levels of noise (a worn finger on a
    capacitive sensor): the mask covers the whole print, not only its outline (which is all
    a grey-level contrast test finds there: the contrast test's band of about half a block
    along the outline is the 15-20% of the mask outside the print)."""
    img, inside = _faint_print_on_shading(contrast, 2.5)
    mask = segment(img, ExtractionParams()) > 0
    assert (mask & inside).sum() / inside.sum() >= 0.98
    assert (mask & inside).sum() / mask.sum() >= 0.78


def test_shading_alone_is_not_a_print():
    img, _ = _faint_print_on_shading(0.0, 2.5)
    t = extract(img, 500)
    assert len(t) == 0 and t.quality == 0


def test_worn_real_prints_keep_their_minutiae():
    """FVC2002 DB3_B under the worn-ridge model (ridge height x0.35): before the ridge-band
    segmentation 37 of its 80 prints gave no template; now every one gives at least 4 minutiae."""
    folder = need_dataset("fvc2002/db3_b")
    counts = []
    for path in sorted(folder.glob("10[48]_*.tif")):
        img = load_fingerprint(path, 500)
        d = apply_condition(img, 500, "worn", condition_rng("db3_b", path.name, "worn"))
        counts.append(len(extract(d.image, d.dpi)))
    assert len(counts) == 16 and min(counts) >= 4, counts
