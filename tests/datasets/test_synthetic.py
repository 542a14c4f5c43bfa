import json

import numpy as np
import pytest

from biomatch import cli
from biomatch.datasets.synthetic import CLASSES, impression, master, write_fvc
from biomatch.errors import InvalidInputError


@pytest.fixture(scope="module")
def loop():
    return master(7, "left_loop")


def test_master_is_deterministic_and_plausible(loop):
    again = master(7, "left_loop")
    np.testing.assert_array_equal(loop.ridges, again.ridges)
    np.testing.assert_array_equal(loop.minutiae, again.minutiae)
    assert loop.ridges.dtype == np.float32 and loop.ridges.shape == (400, 320)
    # Minutiae density of real prints: tens per finger, not hundreds or none.
    assert 20 <= len(loop.minutiae) <= 150
    assert set(np.unique(loop.minutiae[:, 3])) <= {1.0, 2.0}


@pytest.mark.parametrize("cls", CLASSES)
def test_every_class_grows(cls):
    mp = master(3, cls)
    assert mp.fingerprint_class == cls and (mp.ridges > 0).mean() == pytest.approx(0.5, abs=0.15)


def test_impression_ground_truth_inside_image(loop):
    imp = impression(loop, 11)
    h, w = imp.image.shape
    assert imp.image.dtype == np.uint8
    m = imp.minutiae
    assert len(m) >= 10
    assert np.all((m[:, 0] >= 0) & (m[:, 0] < w) & (m[:, 1] >= 0) & (m[:, 1] < h))
    assert np.all((m[:, 2] >= 0) & (m[:, 2] < 2 * np.pi))
    np.testing.assert_array_equal(imp.image, impression(loop, 11).image)
    assert not np.array_equal(imp.image, impression(loop, 12).image)


def test_extractor_finds_the_ground_truth(loop):
    """Most ground-truth minutiae are found within 10 px and 20 degrees (the benchmark measures it on 200)."""
    from biomatch.extract import extract

    imp = impression(loop, 5)
    t = extract(imp.image, 500)
    gt, m = imp.minutiae, t.minutiae
    d = np.hypot(gt[:, None, 0] - m["x"][None], gt[:, None, 1] - m["y"][None])
    da = np.abs(np.angle(np.exp(1j * (gt[:, None, 2] - m["angle"][None]))))
    found = ((d <= 10) & (da <= np.deg2rad(20))).any(axis=1).mean()
    assert found > 0.7


def test_mates_match_and_non_mates_do_not():
    from biomatch.extract import extract
    from biomatch.match import SCORE_AT_FMR, FingerprintMatcher

    a, b = master(21), master(22)
    ta, ta2, tb = (extract(impression(a, 1).image, 500), extract(impression(a, 2).image, 500),
                   extract(impression(b, 1).image, 500))
    m = FingerprintMatcher(ta)
    assert m.match(ta2) > SCORE_AT_FMR[0.001]
    assert m.match(tb) < SCORE_AT_FMR[0.01]


@pytest.mark.parametrize("kwargs", [dict(seed=-1), dict(seed="x"), dict(seed=1, fingerprint_class="spiral")])
def test_bad_master_arguments(kwargs):
    with pytest.raises(InvalidInputError):
        master(**kwargs)


def test_write_fvc_and_cli(tmp_path):
    out = tmp_path / "synth"
    assert cli.main(["synth", "fvc", str(out), "--fingers", "2", "--impressions", "2", "--seed", "3", "--quiet"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["101_1.json", "101_1.png", "101_2.json", "101_2.png",
                     "102_1.json", "102_1.png", "102_2.json", "102_2.png"]
    meta = json.loads((out / "101_1.json").read_text())
    assert meta["dpi"] == 500 and len(meta["minutiae"]) > 5 and len(meta["minutiae"][0]) == 4
    with pytest.raises(InvalidInputError):
        write_fvc(tmp_path / "x", 0, 2, 1)


def test_template_impressions_deterministic_and_mated():
    from biomatch.datasets.synthetic import TemplateModel, template_impressions
    from biomatch.match import FingerprintMatcher

    a = template_impressions(5, 3)
    assert a[0] == template_impressions(5, 3)[0] and len(a) == 3
    assert all(10 <= len(t) <= 120 for t in a)
    b = template_impressions(6, 1)[0]
    m = FingerprintMatcher(a[0])
    assert m.match(a[1]) > 2 * m.match(b)
    easy = TemplateModel(p_missing=0.0, spurious_rate=0.0, jitter_px=0.0, angle_noise_deg=0.0, distortion_px=0.0)
    c = template_impressions(5, 2, easy)
    assert FingerprintMatcher(c[0]).match(c[1]) >= m.match(a[1]) * 0.8
    with pytest.raises(InvalidInputError):
        template_impressions(-1, 2)
