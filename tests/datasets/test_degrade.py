"""Degradation models: determinism, types, validation, and each condition's physical effect."""

import json

import numpy as np
import pytest

from biomatch.datasets import degrade as dg
from biomatch.errors import InvalidInputError

PERIOD_MM = 0.5


def ring_print(dpi: float = 500.0, seed: int = 0) -> np.ndarray:
    """Concentric ridges of period 0.5 mm in an 18 x 14 mm elliptical print on a 20 x 16 mm image."""
    import cv2

    px = dpi / 25.4
    h, w = int(round(20 * px)), int(round(16 * px))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(xx - 0.48 * w, yy - 0.45 * h)
    ridge = np.clip(1.6 * np.cos(2 * np.pi * r / (PERIOD_MM * px)), -1, 1)     # plateau ridges, duty ~0.5
    inside = ((xx - w / 2) / (7 * px)) ** 2 + ((yy - h / 2) / (9 * px)) ** 2 <= 1
    img = np.where(inside, 145 - 85 * ridge, 230.0)
    img = cv2.GaussianBlur(img, (0, 0), 0.03 * px)
    img += np.random.default_rng(seed).normal(0, 2.8, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def img():
    return ring_print()


@pytest.fixture(scope="module")
def inner(img):
    """The print region, eroded by 1 mm (away from its border)."""
    import cv2

    m = dg.print_mask(img, 500).astype(np.uint8)
    return cv2.erode(m, np.ones((41, 41), np.uint8)) > 0


def ridge_fraction(image, mask, level=145.0):
    return float((image[mask] < level).mean())


# --------------------------------------------------------------------------- registry, parser, validation

def test_registry_and_parser():
    assert set(dg.CONDITIONS) == {"none", "dry", "wet", "worn", "scars", "distortion", "contact", "noise",
                                  "gamma", "resolution"}
    function, default, unit = dg.CONDITIONS["dry"]
    assert function is dg.dry and default == 0.05 and "mm" in unit
    assert dg.parse_condition("dry") == ("dry", 0.05)
    assert dg.parse_condition(" Resolution:333 ") == ("resolution", 333.0)
    assert dg.format_condition(*dg.parse_condition("gamma:2.2")) == "gamma:2.2"
    assert dg.format_condition(*dg.parse_condition("none")) == "none"


@pytest.mark.parametrize("spec", ["", "foo", "foo:1", "dry:abc", "dry:1", "dry:-0.01", "worn:0", "none:3",
                                  "resolution:50", "noise:nan", 5, None])
def test_parser_rejects(spec):
    with pytest.raises(InvalidInputError):
        dg.parse_condition(spec)


@pytest.mark.parametrize("call", [
    lambda im: dg.dry(im.astype(np.float32), 500, 0.05, 1),
    lambda im: dg.dry(np.dstack([im, im, im]), 500, 0.05, 1),
    lambda im: dg.dry(im, 50, 0.05, 1),
    lambda im: dg.dry(im, 500, 0.5, 1),
    lambda im: dg.dry(im, 500, True, 1),
    lambda im: dg.dry(im, 500, 0.05, "seed"),
    lambda im: dg.wet(im, 500, -0.01, 1),
    lambda im: dg.worn(im, 500, 1.5, 1),
    lambda im: dg.scars(im, 500, 100, 1),
    lambda im: dg.distortion(im, 500, 9, 1),
    lambda im: dg.contact(im, 500, 1, 1),
    lambda im: dg.noise(im, 500, 300, 1),
    lambda im: dg.gamma(im, 500, 0, None),
    lambda im: dg.resolution(im, 500, 5000, None),
    lambda im: dg.resolution(im[:20, :20], 500, 100, None),   # would leave 4 px
    lambda im: dg.apply_condition(im, 500, "dry", 1, minutiae=np.zeros((3, 3))),
])
def test_invalid_arguments(img, call):
    with pytest.raises(InvalidInputError):
        call(img)


SPECS = ["none", "dry", "wet", "worn", "scars", "distortion", "contact", "noise", "gamma:0.45", "gamma:2.2",
         "resolution:250", "resolution:1000"]


@pytest.mark.parametrize("spec", SPECS)
def test_deterministic_uint8(img, spec):
    a = dg.apply_condition(img, 500, spec, dg.condition_rng("t", spec))
    b = dg.apply_condition(img, 500, spec, dg.condition_rng("t", spec))
    assert a.image.dtype == np.uint8 and a.image.ndim == 2
    np.testing.assert_array_equal(a.image, b.image)
    name, param = dg.parse_condition(spec)
    if name == "resolution":
        assert a.dpi == param
    else:
        assert a.dpi == 500 and a.image.shape == img.shape
    if name in ("dry", "wet", "worn", "scars", "distortion", "noise"):
        c = dg.apply_condition(img, 500, spec, dg.condition_rng("t", spec, "other"))
        assert not np.array_equal(a.image, c.image)
    if name != "none":
        assert a.image.shape != img.shape or not np.array_equal(a.image, img)


def test_output_dpi():
    assert dg.output_dpi(["dry", "resolution:333"]) == 333.0
    assert dg.output_dpi("resolution:250", 569) == 250.0
    assert dg.output_dpi(None, 569) == 569.0
    with pytest.raises(InvalidInputError):
        dg.output_dpi(["sunburn"])


def test_condition_rng_is_stable():
    a = dg.condition_rng("db1_b", "101_1", "dry:0.05").integers(0, 2**31, 4)
    b = dg.condition_rng("db1_b", "101_1", "dry:0.05").integers(0, 2**31, 4)
    c = dg.condition_rng("db1_b", "101_2", "dry:0.05").integers(0, 2**31, 4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# --------------------------------------------------------------------------- physical effects

def components(binary: np.ndarray) -> int:
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    return int((stats[1:, cv2.CC_STAT_AREA] >= 3).sum())


def test_dry_lowers_contrast_thins_and_breaks_ridges(img, inner):
    out = dg.dry(img, 500, 0.05, 3)
    # Contrast of the print (ridge-valley modulation) falls by about the modelled 35%.
    assert out[inner].std() < 0.8 * img[inner].std()
    # Ridges are thinner: a fixed level between the original ridge and valley greys finds less ridge,
    # and a level halfway between the new ones finds less ridge too (thinning, not only lightening).
    assert ridge_fraction(out, inner) < ridge_fraction(img, inner) - 0.1
    mid = 0.5 * (np.percentile(out[inner], 5) + np.percentile(out[inner], 95))
    assert ridge_fraction(out, inner, mid) < ridge_fraction(img, inner) - 0.05
    # Broken ridges: many more separate ridge pieces.
    assert components((out < mid) & inner) > 3 * components((img < 145) & inner)
    # Severity is monotone.
    assert dg.dry(img, 500, 0.1, 3)[inner].std() < out[inner].std()


def test_wet_closes_valleys(img, inner):
    out = dg.wet(img, 500, 0.07, 3)
    valley_before = 1 - ridge_fraction(img, inner)
    valley_after = 1 - ridge_fraction(out, inner)
    # 0.07 mm more ridge on each side of a 0.25 mm valley leaves about 0.11 / 0.5 of the period.
    expected = valley_before - 2 * 0.07 / PERIOD_MM
    assert valley_after < valley_before - 0.15
    assert abs(valley_after - expected) < 0.12


def test_wet_blobs_are_saturated(img):
    out = dg.wet(img, 500, 0.2, 5)   # ~0.86 droplets per cm^2 on a ~2 cm^2 print
    assert (out <= np.percentile(img, 1) + 3).mean() > 3 * (img <= np.percentile(img, 1) + 3).mean()


def test_worn_scales_ridge_relief(img, inner):
    for ratio in (0.25, 0.5):
        out = dg.worn(img, 500, ratio, 4)
        # modulation around the local mean (the print's std) shrinks to about the ratio
        got = out[inner].astype(float).std() / img[inner].astype(float).std()
        assert got == pytest.approx(ratio, abs=0.08)
    # Outside the print nothing wears (the sensor background keeps its level).
    np.testing.assert_allclose(dg.worn(img, 500, 0.5, 4)[:5, :5].mean(), img[:5, :5].mean(), atol=3)


def test_scars_draw_lines_across_the_print(img, inner):
    assert np.array_equal(dg.scars(img, 500, 0.0, 1), img)
    out = dg.scars(img, 500, 5.0, 1)
    changed = np.abs(out.astype(int) - img.astype(int)) > 40
    # ~10 lines of ~0.25 x 5 mm on ~2 cm^2: a few percent of the print
    assert 0.005 < changed[inner].mean() < 0.2
    assert not changed[:3, :].any()   # nothing outside the print's neighbourhood


def test_distortion_field_and_image_agree(img):
    import cv2

    mm = 1.0
    mask = dg.print_mask(img, 500)
    dx, dy = dg.distortion_field(img, 500, mm, dg.condition_rng("d"))
    mag = np.hypot(dx, dy)
    assert mag[mask].max() == pytest.approx(mm * 500 / 25.4, rel=0.02)
    assert mag[~mask].max() <= 1.6 * mm * 500 / 25.4    # the outer skin moves rigidly
    # Bright markers on the print move where the point transform says.
    marked = img.copy()
    ys, xs = np.nonzero(cv2.erode(mask.astype(np.uint8), np.ones((61, 61), np.uint8)))
    rng = np.random.default_rng(0)
    pick = rng.choice(len(xs), 8, replace=False)
    pts = np.column_stack([xs[pick], ys[pick], np.zeros(8), np.ones(8)]).astype(float)
    for x, y in pts[:, :2]:
        cv2.circle(marked, (int(x), int(y)), 5, 255, -1)
    d = dg.apply_condition(marked, 500, f"distortion:{mm}", dg.condition_rng("d"), minutiae=pts)
    assert len(d.minutiae) == 8
    blurred = cv2.GaussianBlur(d.image.astype(np.float32), (0, 0), 3)
    for x, y in d.minutiae[:, :2]:
        x0, y0 = int(round(x)) - 12, int(round(y)) - 12
        win = blurred[y0:y0 + 25, x0:x0 + 25]
        wy, wx = np.unravel_index(np.argmax(win), win.shape)
        assert np.hypot(x0 + wx - x, y0 + wy - y) <= 2.0
    moved = np.hypot(*(d.minutiae[:, :2] - pts[:, :2]).T)
    assert moved.max() <= mm * 500 / 25.4 * 1.01


def test_distortion_turns_minutia_directions_with_the_skin(img):
    pts = np.array([[160.0, 200.0, 0.3, 1.0]])
    d = dg.apply_condition(img, 500, "distortion:0", 1, minutiae=pts)
    np.testing.assert_allclose(d.minutiae, pts, atol=1e-6)
    np.testing.assert_array_equal(d.image, img)


@pytest.mark.parametrize("area", [40.0, 64.0, 100.0])
def test_contact_area(img, inner, area):
    out = dg.contact(img, 500, area, 2)
    # Area still showing ridges: dark pixels left, over the print's ridge fraction.
    ridges = img < 145
    seen = (ridges & (out < 145)).sum() / ridges[inner].mean() * (25.4 / 500) ** 2
    assert seen == pytest.approx(area, rel=0.1)


def test_contact_drops_minutiae_outside(img):
    m = np.array([[img.shape[1] / 2, img.shape[0] / 2, 0, 1], [5.0, 5.0, 0, 1]])
    d = dg.apply_condition(img, 500, "contact:64", 2, minutiae=m)
    assert len(d.minutiae) == 1 and d.minutiae[0, 0] == m[0, 0]


def test_noise_level_and_impulses():
    flat = np.full((300, 300), 128, np.uint8)
    out = dg.noise(flat, 500, 20.0, 7).astype(float)
    impulses = (out == 0) | (out == 255)
    assert impulses.mean() == pytest.approx(0.0005 * 20, rel=0.2)
    assert out[~impulses].std() == pytest.approx(20.0, rel=0.05)
    assert np.array_equal(dg.noise(flat, 500, 0.0, 7), flat)


def test_gamma_curve():
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for g in (0.45, 2.2):
        expected = np.clip(np.rint(255 * (np.arange(256) / 255.0) ** g), 0, 255).reshape(16, 16)
        np.testing.assert_array_equal(dg.gamma(ramp, 500, g), expected)
    assert np.array_equal(dg.gamma(ramp, 500, 1.0), ramp)


@pytest.mark.parametrize("target", [250.0, 333.0, 750.0, 1000.0])
def test_resolution_scales_size_and_ground_truth(img, target):
    m = np.array([[100.0, 150.0, 1.0, 2.0]])
    d = dg.apply_condition(img, 500, f"resolution:{target:g}", 0, minutiae=m)
    h, w = img.shape
    assert d.image.shape == (round(h * target / 500), round(w * target / 500)) and d.dpi == target
    np.testing.assert_allclose(d.minutiae[0, :2], (m[0, :2] + 0.5) * target / 500 - 0.5, rtol=0.01)
    assert d.minutiae[0, 2] == 1.0 and d.minutiae[0, 3] == 2.0
    # the ridge period in pixels follows the resolution (peak of the row spectrum)
    row = d.image[d.image.shape[0] // 2].astype(float)
    row -= row.mean()
    k = np.argmax(np.abs(np.fft.rfft(row))[1:]) + 1
    period_px = len(row) / k
    assert period_px == pytest.approx(PERIOD_MM * target / 25.4, rel=0.2)


def test_skin_conditions_work_on_coarse_images():
    """At 165 dpi (SOCOFing) the skin is simulated at 500 dpi and integrated back, not drawn as salt noise."""
    coarse = ring_print(165.0)
    import cv2

    inner = cv2.erode(dg.print_mask(coarse, 165).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    out = dg.wet(coarse, 165, 0.07, 1)
    assert out.shape == coarse.shape
    assert (out[inner] < 145).mean() > (coarse[inner] < 145).mean() + 0.1
    dry = dg.dry(coarse, 165, 0.05, 1)
    assert dry[inner].std() < coarse[inner].std()


# --------------------------------------------------------------------------- generated prints with conditions

def test_write_fvc_with_conditions(tmp_path):
    import cv2

    from biomatch.datasets.synthetic import write_fvc

    plain = write_fvc(tmp_path / "plain", 2, 1, 3)
    again = write_fvc(tmp_path / "again", 2, 1, 3, conditions=None)
    for name in ("101_1.png", "101_1.json", "102_1.png"):
        assert (plain / name).read_bytes() == (again / name).read_bytes()
    assert "conditions" not in json.loads((plain / "101_1.json").read_text())
    low = write_fvc(tmp_path / "low", 2, 1, 3, conditions=["dry:0.05", "resolution:250"])
    meta, base = json.loads((low / "101_1.json").read_text()), json.loads((plain / "101_1.json").read_text())
    assert meta["dpi"] == 250 and meta["conditions"] == ["dry:0.05", "resolution:250"]
    assert cv2.imread(str(low / "101_1.png"), 0).shape == (200, 160)
    got, want = np.array(meta["minutiae"]), np.array(base["minutiae"])
    assert len(got) == len(want)
    np.testing.assert_allclose(got[:, :2], (want[:, :2] + 0.5) / 2 - 0.5, atol=0.02)
    with pytest.raises(InvalidInputError):
        write_fvc(tmp_path / "bad", 1, 1, 3, conditions=["sunburn"])


def test_distorted_impression_keeps_its_ground_truth_findable():
    """The extractor finds most moved ground-truth minutiae on a strongly distorted generated print."""
    from biomatch.datasets.synthetic import apply_conditions, impression, master
    from biomatch.extract import extract

    imp = impression(master(7, "left_loop"), 5)
    d = apply_conditions(imp, "distortion:1.5", 11)
    m = extract(d.image, d.dpi).minutiae
    gt = d.minutiae
    assert len(gt) >= 0.8 * len(imp.minutiae)
    dist = np.hypot(gt[:, None, 0] - m["x"][None], gt[:, None, 1] - m["y"][None])
    da = np.abs(np.angle(np.exp(1j * (gt[:, None, 2] - m["angle"][None]))))
    assert ((dist <= 12) & (da <= np.deg2rad(30))).any(axis=1).mean() > 0.6
