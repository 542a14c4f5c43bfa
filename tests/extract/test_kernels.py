"""numba kernels of the extractor against slow, obviously-correct references."""

import numpy as np
import pytest

from biomatch.extract import _enhance_nb, _minutiae_nb, _orientation_nb, _skeleton_nb
from biomatch.extract.orientation import orientation_field
from biomatch.params import ExtractionParams

from _util import synthetic_ridges


def _ref_crossing_number(code):
    bits = [(code >> i) & 1 for i in range(8)]
    return sum(abs(bits[i] - bits[(i + 1) % 8]) for i in range(8)) // 2


def test_crossing_number_all_codes():
    for code in range(256):
        assert _minutiae_nb.crossing_number(code) == _ref_crossing_number(code)


def test_neighbour_code_matches_reference():
    rng = np.random.default_rng(0)
    img = (rng.random((9, 9)) > 0.5).astype(np.uint8)
    order = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    for y in range(9):
        for x in range(9):
            ref = 0
            for i, (dy, dx) in enumerate(order):
                yy, xx = y + dy, x + dx
                if 0 <= yy < 9 and 0 <= xx < 9 and img[yy, xx]:
                    ref |= 1 << i
            assert _skeleton_nb.neighbour_code(img, y, x) == ref


def test_gabor_filter_matches_direct_convolution():
    rng = np.random.default_rng(1)
    h, w = 23, 19
    img = rng.normal(size=(h, w)).astype(np.float32)
    periods = np.array([6.0, 9.0])
    bank = _enhance_nb.gabor_bank(4, periods, 3.0, 3.0, 3)
    a_idx = rng.integers(0, 4, (h, w)).astype(np.int32)
    p_idx = rng.integers(0, 2, (h, w)).astype(np.int32)
    mask = (rng.random((h, w)) > 0.2).astype(np.uint8)
    out = _enhance_nb.gabor_filter(img, a_idx, p_idx, mask, bank)
    pad = np.pad(img, 3, mode="edge")
    ref = np.zeros_like(img)
    for y in range(h):
        for x in range(w):
            if mask[y, x]:
                ref[y, x] = (bank[a_idx[y, x], p_idx[y, x]] * pad[y:y + 7, x:x + 7]).sum()
    np.testing.assert_allclose(out, ref, atol=1e-5)


def _direct_gabor(img, a_idx, p_idx, mask, bank):
    """Per-pixel convolution in float64 over the edge-replicated image."""
    h, w = img.shape
    k = bank.shape[2]
    pad = np.pad(img.astype(np.float64), k // 2, mode="edge")
    ref = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            if mask[y, x]:
                ref[y, x] = (bank[a_idx[y, x], p_idx[y, x]] * pad[y:y + k, x:x + k]).sum()
    return ref


def _smooth_indices(h, w, n_a, n_p):
    """Index fields constant over runs of several pixels along rows, as real orientation fields are."""
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx // 11 + yy // 7) % n_a).astype(np.int32), ((xx // 23 + yy // 13) % n_p).astype(np.int32)


def test_gabor_filter_runs_match_direct_convolution():
    """The extractor's bank (13 x 13 kernels) over runs of one kernel, mask holes and image edges."""
    rng = np.random.default_rng(2)
    h, w = 41, 67
    img = rng.normal(size=(h, w)).astype(np.float32)
    bank = _enhance_nb.gabor_bank(16, np.arange(5.0, 15.01, 0.5), 4.0, 4.0, 6)
    a_idx, p_idx = _smooth_indices(h, w, 16, bank.shape[1])
    mask = np.ones((h, w), np.uint8)
    mask[:, 30:33] = 0
    mask[rng.random((h, w)) < 0.05] = 0
    out = _enhance_nb.gabor_filter(img, a_idx, p_idx, mask, bank)
    assert out.dtype == np.float32 and not out[mask == 0].any()
    np.testing.assert_allclose(out, _direct_gabor(img, a_idx, p_idx, mask, bank), atol=1e-5)


def _fma32(a, b, c):
    """float32 ``a * b + c`` rounded once, elementwise: exact float64 product, the sum rounded to odd
    in float64 (exact sum by TwoSum), then to float32 (Boldo & Melquiond 2008)."""
    p = a.astype(np.float64) * b.astype(np.float64)
    c = c.astype(np.float64)
    s = p + c
    bv = s - p
    err = (p - (s - bv)) + (c - bv)
    even = (s.view(np.int64) & 1) == 0
    s = np.where((err != 0) & even, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def _ordered_gabor(img, a_idx, p_idx, mask, bank):
    """The summation order gabor_filter documents, every pixel at once (numpy, float32)."""
    h, w = img.shape
    k = bank.shape[2]
    pad = np.pad(img, k // 2, mode="edge")
    ker = bank[a_idx, p_idx]
    n_lane = 8 * (k // 8)
    s = np.zeros((h, w), np.float32)
    for i in range(k):
        lanes = [s] + [np.zeros((h, w), np.float32)] * 7
        for j in range(n_lane):
            lanes[j % 8] = _fma32(ker[:, :, i, j], pad[i:i + h, j:j + w], lanes[j % 8])
        s = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]))
        for j in range(n_lane, k):
            s = _fma32(ker[:, :, i, j], pad[i:i + h, j:j + w], s)
    return np.where(mask > 0, s, np.float32(0))


@pytest.mark.parametrize("radius", [3, 6, 9])
def test_gabor_filter_summation_order_is_fixed(radius):
    """Bit for bit the documented order (templates depend on the last bits through the sign of the
    enhanced image): kernels under 8 taps wide, the extractor's 13 and two blocks of lanes (19)."""
    rng = np.random.default_rng(radius)
    h, w = 37, 53
    img = rng.normal(size=(h, w)).astype(np.float32)
    bank = _enhance_nb.gabor_bank(8, np.array([6.0, 9.0, 12.0]), 4.0, 4.0, radius)
    a_idx, p_idx = _smooth_indices(h, w, 8, 3)
    a_idx[rng.random((h, w)) < 0.1] = 0
    mask = (rng.random((h, w)) > 0.1).astype(np.uint8)
    out = _enhance_nb.gabor_filter(img, a_idx, p_idx, mask, bank)
    np.testing.assert_array_equal(out, _ordered_gabor(img, a_idx, p_idx, mask, bank))


def test_gabor_bank_is_zero_mean():
    bank = _enhance_nb.gabor_bank(8, np.array([5.0, 9.0, 15.0]), 4.0, 4.0, 6)
    np.testing.assert_allclose(bank.sum(axis=(2, 3)), 0, atol=1e-6)


@pytest.mark.parametrize("period", [6.0, 9.0, 12.0])
@pytest.mark.parametrize("angle", [0.0, 30.0, 100.0])
def test_ridge_period_and_orientation_on_known_pattern(period, angle):
    p = ExtractionParams()
    img = synthetic_ridges(200, 200, period=period, angle_deg=angle).astype(np.float32)
    norm = (img - img.mean()) / img.std()
    norm = -norm  # ridges bright
    mask = np.ones(img.shape, np.uint8)
    theta, coh = orientation_field(norm, mask, p)
    inner = (slice(40, 160), slice(40, 160))
    err = np.angle(np.exp(2j * (theta[inner] - np.deg2rad(angle)))) / 2
    assert np.median(np.abs(np.rad2deg(err))) < 2.0
    assert np.median(coh[inner]) > 0.8
    raw = _orientation_nb.block_ridge_period(norm, theta, mask, 16, 40, 16, 5.0, 15.0, 0.25, 0.25)[0]
    est = raw[3:-3, 3:-3]
    assert (est > 0).mean() > 0.9
    assert abs(np.median(est[est > 0]) - period) < 0.3


@pytest.mark.parametrize("weak", [0.6, 0.8])
def test_ridge_period_is_not_doubled_by_alternating_ridge_contrast(weak):
    # Ridges 7 px apart, every other one fainter (dry, unevenly inked prints): the
    # autocorrelation peaks higher at 14 px than at 7 px, but 7 px is the ridge period.
    period = 7.0
    x = np.arange(200, dtype=np.float64)
    row = np.cos(2 * np.pi * x / period) + weak * np.cos(np.pi * x / period)
    norm = np.tile(((row - row.mean()) / row.std()).astype(np.float32), (200, 1))
    theta = np.full(norm.shape, np.pi / 2, np.float32)  # ridges vertical
    mask = np.ones(norm.shape, np.uint8)
    raw = _orientation_nb.block_ridge_period(norm, theta, mask, 16, 40, 16, 5.0, 15.0, 0.25, 0.25)[0]
    est = raw[3:-3, 3:-3]
    assert (est > 0).mean() > 0.9
    assert abs(np.median(est[est > 0]) - period) < 0.5


def test_median_fill_matches_reference():
    rng = np.random.default_rng(2)
    raw = np.where(rng.random((7, 9)) > 0.4, rng.uniform(5, 15, (7, 9)), 0).astype(np.float32)
    out = _orientation_nb.median_fill(raw, 1, np.float32(9.0))
    for y in range(7):
        for x in range(9):
            win = raw[max(0, y - 1):y + 2, max(0, x - 1):x + 2]
            v = win[win > 0]
            assert out[y, x] == pytest.approx(np.median(v) if v.size else 9.0, rel=1e-6)


def _components(img):
    import cv2

    return cv2.connectedComponents(img.astype(np.uint8), connectivity=8)[0]


def test_thinning_gives_thin_connected_subset():
    import cv2

    img = np.zeros((80, 90), np.uint8)
    cv2.line(img, (5, 10), (80, 30), 1, 5)
    cv2.circle(img, (45, 55), 15, 1, 4)
    cv2.line(img, (10, 70), (40, 70), 1, 3)
    skel = img.copy()
    _skeleton_nb.thin(skel, _skeleton_nb.GUO_HALL_LUT)
    assert np.all(skel <= img)
    assert _components(skel) == _components(img)
    # One pixel wide: no 2x2 square fully set.
    sq = skel[:-1, :-1] & skel[1:, :-1] & skel[:-1, 1:] & skel[1:, 1:]
    assert not sq.any()
    assert skel.sum() > 100


def test_detect_and_trace_on_a_fork():
    skel = np.zeros((40, 40), np.uint8)
    skel[20, 5:21] = 1                                   # stem
    for i in range(15):
        skel[20 - i, 20 + i] = 1                         # upper branch
        skel[20 + i, 20 + i] = 1                         # lower branch
    mask = np.ones_like(skel)
    found = _minutiae_nb.detect(skel, mask)
    kinds = {(int(x), int(y)): int(k) for x, y, k in found}
    assert kinds[(5, 20)] == 1 and kinds[(20, 20)] == 2
    assert sum(k == 1 for k in kinds.values()) == 3
    kind_map = np.zeros(skel.shape, np.int32)
    kind_map[found[:, 1], found[:, 0]] = np.arange(1, len(found) + 1)
    ang, hit, length = _minutiae_nb.analyse(skel, found, kind_map, 10, 40)
    stem_end = [i for i, r in enumerate(found) if (r[0], r[1]) == (5, 20)][0]
    fork = [i for i, r in enumerate(found) if (r[0], r[1]) == (20, 20)][0]
    assert hit[stem_end, 0] == fork and length[stem_end, 0] == 15
    assert np.rad2deg(ang[stem_end, 0]) == pytest.approx(0.0, abs=1e-6)  # traced towards +x
