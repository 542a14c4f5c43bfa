"""End to end: image → extract → template → native matcher, with score bands."""

import numpy as np
import pytest

from biomatch.extract import extract
from biomatch.match import SCORE_AT_FMR, FingerprintMatcher, prepare
from biomatch.formats import decode, encode

from _util import need_dataset


def _threshold(fmr):
    t = SCORE_AT_FMR.get(fmr)
    assert t is not None, f"the matcher documents no threshold for FMR {fmr}"
    return t


@pytest.fixture(scope="module")
def trio():
    folder = need_dataset("samples/sourceafis_triple")
    return {k: extract(folder / f"{k}.png", 500) for k in ("probe", "matching", "nonmatching")}


def test_sourceafis_trio_score_bands(trio):
    m = FingerprintMatcher(trio["probe"])
    genuine, impostor = m.match(trio["matching"]), m.match(trio["nonmatching"])
    # The mate must clear the strictest documented threshold with margin; the non-mate
    # must stay below the loosest one.
    assert genuine >= 2 * _threshold(0.001)
    assert impostor < _threshold(0.01)


def test_template_round_trip_keeps_scores(trio):
    m = FingerprintMatcher(trio["probe"])
    again = decode(encode(trio["matching"]))
    assert m.match(again) == m.match(trio["matching"])


def test_scores_are_deterministic(trio):
    folder = need_dataset("samples/sourceafis_triple")
    a = FingerprintMatcher(extract(folder / "probe.png", 500)).match(extract(folder / "matching.png", 500))
    b = FingerprintMatcher(extract(folder / "probe.png", 500)).match(extract(folder / "matching.png", 500))
    assert a == b


def _transformed(img, angle_deg=0.0, dx=0, dy=0):
    import cv2

    h, w = img.shape
    # Pad so that nothing of the print is cut by the rotation; background is white.
    pad = 80
    big = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=255)
    centre = (big.shape[1] / 2, big.shape[0] / 2)
    rot = cv2.getRotationMatrix2D(centre, angle_deg, 1.0)
    rot[:, 2] += (dx, dy)
    return cv2.warpAffine(big, rot, (big.shape[1], big.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=255)


@pytest.fixture(scope="module")
def probe_image():
    import cv2

    return cv2.imread(str(need_dataset("samples/sourceafis_triple/probe.png")), cv2.IMREAD_GRAYSCALE)


@pytest.mark.parametrize("angle, dx, dy", [(30, 0, 0), (-30, 0, 0), (0, 40, -25), (15, -30, 20)])
def test_rotated_and_translated_copies_match(trio, probe_image, angle, dx, dy):
    copy = extract(_transformed(probe_image, angle, dx, dy), 500)
    assert FingerprintMatcher(trio["probe"]).match(copy) >= 2 * _threshold(0.001)


def test_cropped_copy_matches(trio, probe_image):
    h, w = probe_image.shape
    crop = probe_image[h // 6: h - h // 6, w // 5: w - w // 10]
    copy = extract(crop, 500)
    assert FingerprintMatcher(trio["probe"]).match(copy) >= _threshold(0.001)


def test_match_many_equals_match(trio):
    gallery = [prepare(trio[k]) for k in ("matching", "nonmatching", "probe")]
    m = FingerprintMatcher(trio["probe"])
    many = m.match_many(gallery)
    assert many.dtype == np.float32 and many.shape == (3,)
    np.testing.assert_allclose(many, [m.match(g) for g in gallery], rtol=1e-6)
