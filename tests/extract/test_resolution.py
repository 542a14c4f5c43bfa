"""The stated resolution is checked against the ridge period; dpi="auto" estimates it (issue 14 item 5)."""

import pickle

import numpy as np
import pytest

import biomatch
from biomatch.errors import InvalidInputError, ResolutionError
from biomatch.extract import extract
from biomatch.extract.resolution import (ResolutionParams, check_resolution, estimate_resolution,
                                         native_ridge_period)
from biomatch.imaging import load_fingerprint
from biomatch.params import from_json, to_json

from _util import need_dataset, synthetic_ridges

TYPICAL_MM = ResolutionParams().ridge_period_typical_mm


def _dpi_for(period_px):
    return period_px * 25.4 / TYPICAL_MM


# ----------------------------------------------------------------------------- synthetic, known period

@pytest.mark.parametrize("period", [2.6, 3.0, 5.0, 9.0, 14.0, 22.0, 30.0])
@pytest.mark.parametrize("angle", [0.0, 30.0, 75.0])
def test_period_of_synthetic_ridges(period, angle):
    side = int(np.clip(period * 22, 120, 700))
    found = native_ridge_period(synthetic_ridges(side, side, period=period, angle_deg=angle, seed=3))
    assert found is not None
    assert found[0] == pytest.approx(period, rel=0.08)
    est = estimate_resolution(synthetic_ridges(side, side, period=period, angle_deg=angle, seed=3))
    assert est.confirmed and est.period_px == pytest.approx(period, rel=0.03)
    assert est.dpi == pytest.approx(_dpi_for(period), rel=0.03)


@pytest.mark.parametrize("period, stated", [(9.0, 200), (9.0, 250), (3.0, 500), (20.0, 500), (4.0, 1000)])
def test_mis_stated_dpi_raises_and_names_the_estimate(period, stated):
    image = synthetic_ridges(300, 300, period=period, angle_deg=20, seed=1)
    with pytest.raises(ResolutionError) as info:
        extract(image, stated)
    err = info.value
    assert isinstance(err, InvalidInputError)
    assert err.dpi == stated and err.estimated_dpi == pytest.approx(_dpi_for(period), rel=0.05)
    assert err.period_mm == pytest.approx(period / stated * 25.4, rel=0.05)
    text = str(err)
    assert text.startswith("dpi:") and f"got {stated} dpi" in text
    assert f"{err.period_mm:.2f} mm" in text
    assert f"appears to be about {int(round(err.estimated_dpi / 10) * 10)} dpi" in text
    copy = pickle.loads(pickle.dumps(err))  # crosses process boundaries intact
    assert type(copy) is ResolutionError and str(copy) == text and copy.estimated_dpi == err.estimated_dpi


@pytest.mark.parametrize("period, stated", [(9.0, 500), (9.0, 569), (5.0, 300), (18.0, 1000), (3.0, 165),
                                            (4.5, 250)])
def test_correctly_stated_dpi_passes(period, stated):
    t = extract(synthetic_ridges(300, 300, period=period, angle_deg=20, seed=1), stated)
    assert t.width == round(300 * 500 / stated)


def test_the_range_is_a_parameter():
    image = synthetic_ridges(300, 300, period=9.0, angle_deg=20, seed=1)  # 0.91 mm at 250 dpi
    extract(image, 250, resolution=ResolutionParams(check=False))
    extract(image, 250, resolution=ResolutionParams(ridge_period_max_mm=1.0))
    with pytest.raises(ResolutionError):
        extract(image, 500, resolution=ResolutionParams(ridge_period_max_mm=0.4, ridge_period_typical_mm=0.3))


@pytest.mark.parametrize("image", [np.zeros((300, 300), np.uint8), np.full((300, 300), 200, np.uint8),
                                   np.random.default_rng(0).integers(0, 256, (300, 300)).astype(np.uint8),
                                   np.random.default_rng(1).normal(128, 30, (400, 300)).clip(0, 255).astype(np.uint8)])
@pytest.mark.parametrize("dpi", [100, 500, 2000])
def test_no_ridge_pattern_is_never_refused(image, dpi):
    """Blank and noise images have no period to check: the extractor decides, as before."""
    assert native_ridge_period(image) is None
    extract(image, dpi)  # whatever the extractor makes of it, no ResolutionError


def test_auto_estimates_the_resolution_of_a_synthetic_print():
    cap = {}
    t = extract(synthetic_ridges(300, 300, period=6.0, angle_deg=40, seed=2), "auto", capture=cap)
    assert cap["resolution"].confirmed
    assert cap["dpi"] == pytest.approx(_dpi_for(6.0), rel=0.03)
    assert t.width == pytest.approx(300 * 500 / cap["dpi"], abs=1)


@pytest.mark.parametrize("image", [np.zeros((300, 300), np.uint8), np.full((200, 250), 255, np.uint8)])
def test_auto_without_ridges_falls_back_to_500_dpi(image):
    cap = {}
    t = extract(image, "auto", capture=cap)
    assert cap["resolution"] is None and cap["dpi"] == 500.0
    assert len(t) == 0 and t.quality == 0 and (t.height, t.width) == image.shape


@pytest.mark.parametrize("dpi", ["Auto", "500", "", b"auto", None, [500]])
def test_other_dpi_values_are_refused(dpi):
    with pytest.raises(InvalidInputError, match="dpi") as info:
        extract(synthetic_ridges(120, 120), dpi)
    assert not isinstance(info.value, ResolutionError)


def test_params_validate_and_round_trip():
    rp = ResolutionParams(ridge_period_min_mm=0.25)
    assert from_json(to_json(rp), ResolutionParams) == rp
    for bad in ({"ridge_period_min_mm": 0.5}, {"ridge_period_max_mm": float("nan")}, {"check": 1},
                {"min_ridge_fraction": 1.5}, {"max_disagreement": 0.9}, {"fallback_dpi": 50}):
        with pytest.raises(InvalidInputError):
            ResolutionParams(**bad)
    with pytest.raises(InvalidInputError, match="resolution"):
        extract(synthetic_ridges(120, 120), 500, resolution={"check": False})


# ----------------------------------------------------------------------------- real prints

FVC_DPI = {"db1_b": 500, "db2_b": 569, "db3_b": 500, "db4_b": 500}


def _mis_scaled(folder):
    """SOCOFing's odd-sized images: 241x298 scans at about 2.5x the scale of the usual 96x103."""
    import cv2

    odd = [p for p in sorted(folder.glob("*.png"))
           if cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).shape != (103, 96)]
    return odd


@pytest.fixture(scope="module")
def soco_mis_scaled():
    odd = _mis_scaled(need_dataset("socofing/real"))
    assert len(odd) == 31  # subjects 53, 226, 270 (all ten fingers) and one of 297
    return odd


def test_every_mis_scaled_socofing_image_is_refused_at_165_dpi(soco_mis_scaled):
    for path in soco_mis_scaled:
        with pytest.raises(ResolutionError) as info:
            check_resolution(load_fingerprint(path, 500), 165)
        assert 350 <= info.value.estimated_dpi <= 600, path.name
        assert info.value.period_mm > ResolutionParams().ridge_period_max_mm


def test_mis_scaled_socofing_through_extract_and_auto(soco_mis_scaled):
    path = soco_mis_scaled[0]
    with pytest.raises(ResolutionError, match=r"got 165 dpi.*appears to be about \d+ dpi"):
        biomatch.extract(path, 165)
    assert len(extract(path, 165, resolution=ResolutionParams(check=False))) == 0  # the silent failure
    cap = {}
    t = biomatch.extract(path, "auto", capture=cap)
    assert 350 <= cap["dpi"] <= 600 and len(t) >= 12 and t.quality > 0


def test_usual_socofing_images_pass_at_165_dpi():
    folder = need_dataset("socofing/real")
    paths = sorted(folder.glob("*.png"))[::50]
    for path in paths:
        native = load_fingerprint(path, 500)
        if native.shape == (103, 96):
            check_resolution(native, 165)


@pytest.mark.parametrize("db", sorted(FVC_DPI))
def test_every_fvc_image_passes_at_its_resolution(db):
    folder = need_dataset(f"fvc2002/{db}")
    paths = sorted(folder.glob("*.tif"))
    assert len(paths) == 80
    for path in paths:
        check_resolution(load_fingerprint(path, 500), FVC_DPI[db])


@pytest.mark.parametrize("db", sorted(FVC_DPI))
def test_fvc_stated_at_two_fifths_of_its_resolution_is_refused(db):
    folder = need_dataset(f"fvc2002/{db}")
    paths = sorted(folder.glob("*.tif"))[::8]
    refused = 0
    for path in paths:
        try:
            check_resolution(load_fingerprint(path, 500), FVC_DPI[db] * 0.4)
        except ResolutionError:
            refused += 1
    assert refused >= 0.7 * len(paths)


def test_check_does_not_change_the_template():
    path = need_dataset("fvc2002/db1_b/102_3.tif")
    assert extract(path, 500) == extract(path, 500, resolution=ResolutionParams(check=False))


def test_fvc_auto_is_close_to_the_published_resolution():
    folder = need_dataset("fvc2002/db2_b")
    dpis = []
    for path in sorted(folder.glob("*.tif"))[::10]:
        est = estimate_resolution(load_fingerprint(path, 500))
        dpis.append(est.dpi)
    assert np.median(dpis) == pytest.approx(569, rel=0.10)


def test_1000_ppi_card_crop_stated_as_500_dpi_is_refused():
    folder = need_dataset("samples/nist_tenprint_1000ppi")
    path = sorted(folder.glob("*.bmp"))[0]
    with pytest.raises(ResolutionError, match="appears to be about"):
        extract(path, 500)
    assert extract(path, 1000).quality > 0
    cap = {}
    assert extract(path, "auto", capture=cap).quality > 0 and 800 <= cap["dpi"] <= 1300


@pytest.mark.parametrize("dpi", [500, 1000, 2000])
def test_face_photos_are_not_refused(dpi):
    """No ridge pattern, no period: a face is not 'a print at another resolution'."""
    folder = need_dataset("faces/photos_a")
    for path in sorted(folder.glob("*/*.jpg"))[:4]:
        t = extract(path, dpi)
        assert len(t) == 0 and t.quality == 0, path.name
