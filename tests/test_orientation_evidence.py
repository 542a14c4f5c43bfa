"""The block orientation field as matching evidence: template codec, native fusion, kernels.

Real prints (FVC2002 DB1_B, biomatch's extractor) carry the field; numpy references recompute
the agreement A2 from what explain() reports.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np
import pytest

from _util import need_dataset
from biomatch.errors import FormatError, InvalidInputError
from biomatch.match import SCORE_AT_FMR, FingerprintMatcher, prepare
from biomatch.params import MatchParams
from biomatch.formats import decode, dump, encode, load
from biomatch.template import MINUTIA_DTYPE, NO_PRINT, Template, grid_shape

import biomatch._native as native  # noqa: E402  (part of the package: a broken build fails, never skips)
SCALE = native.Config(dataclasses.asdict(MatchParams()))  # its orientation_scale(): the default mapping

NAMES = ["101_1", "101_2", "101_3", "102_1", "102_2", "103_1", "103_4", "104_2"]


@pytest.fixture(scope="module")
def prints():
    import biomatch

    folder = need_dataset("fvc2002/db1_b")
    return [biomatch.extract(folder / f"{n}.tif", 500) for n in NAMES]


def without_grid(t: Template) -> Template:
    return Template(t.minutiae, t.width, t.height, t.quality, t.params_hash)


def small_template(grid=True, seed=3):
    rng = np.random.default_rng(seed)
    n, w, h = 12, 70, 40
    g = rng.integers(0, 180, grid_shape(w, h)).astype(np.uint8) if grid else None
    if grid:
        g[0, 0] = NO_PRINT
    return Template.from_arrays(rng.uniform(0, w, n), rng.uniform(0, h, n), rng.uniform(0, 2 * np.pi, n),
                                width=w, height=h, print_quality=40, params_hash="0123456789abcdef",
                                orientation_grid=g)


# ---------------------------------------------------------------- template and codec

def test_codec_round_trip_with_and_without_grid():
    t = small_template()
    assert t.orientation_grid.shape == (3, 5) == grid_shape(70, 40)
    data = encode(t)
    assert struct.unpack_from("<H", data, 4)[0] == 3
    back = decode(data)
    assert back == t
    np.testing.assert_array_equal(back.orientation_grid, t.orientation_grid)
    assert not back.orientation_grid.flags.writeable
    bare = without_grid(t)
    assert bare != t  # the field takes part in equality
    data2 = encode(bare)
    assert struct.unpack_from("<H", data2, 4)[0] == 2 and len(data) - len(data2) == 1 + 15
    assert decode(data2) == bare and decode(data2).orientation_grid is None
    other = Template(t.minutiae, t.width, t.height, t.quality, t.params_hash,
                     np.where(t.orientation_grid == 7, 8, 7).astype(np.uint8))
    assert other != t


def test_version_2_layout_is_unchanged_and_read_without_grid():
    """A template without the field is written byte for byte as version 2 (earlier releases'
    files), and such files, and version 1 ones, decode with no field."""
    t = without_grid(small_template())
    head = struct.pack("<4sHHHBB16sH", b"BMT1", 2, 70, 40, 40, 0, b"0123456789abcdef", len(t))
    body = head + t.minutiae.astype(MINUTIA_DTYPE).tobytes()
    old = body + struct.pack("<I", zlib.crc32(body))
    assert encode(t) == old
    assert decode(old) == t and decode(old).orientation_grid is None
    v1 = bytearray(body)
    struct.pack_into("<H", v1, 4, 1)
    v1 = bytes(v1) + struct.pack("<I", zlib.crc32(bytes(v1)))
    assert decode(v1).orientation_grid is None and len(decode(v1)) == len(t)


@pytest.mark.parametrize("mutate", ["block", "value", "truncate", "extra"])
def test_corrupt_grid_raises_format_error(mutate):
    data = bytearray(encode(small_template())[:-4])
    end = 30 + 14 * 12
    if mutate == "block":
        data[end] = 32
    elif mutate == "value":
        data[end + 3] = 200
    elif mutate == "truncate":
        data = data[:-1]
    else:
        data += b"\0"
    data = bytes(data) + struct.pack("<I", zlib.crc32(bytes(data)))
    with pytest.raises(FormatError):
        decode(data)


def test_grid_is_validated():
    t = small_template()
    for bad in (t.orientation_grid.astype(np.int16), t.orientation_grid[:2], t.orientation_grid.T.copy(),
                np.full((3, 5), 180, np.uint8), [[0] * 5] * 3):
        with pytest.raises(InvalidInputError, match="orientation_grid"):
            Template(t.minutiae, t.width, t.height, t.quality, t.params_hash, bad)
    with pytest.raises(ValueError):
        native.prepare(native.Config(dataclasses.asdict(MatchParams())), t.as_float_array(),
                       np.full((3, 5), 200, np.uint8))


def test_standard_formats_omit_the_grid():
    t = small_template()
    for fmt in ("iso19794-2:2005", "iso19794-2:2011", "ansi378"):
        data = dump(t, fmt)
        assert data == dump(without_grid(t), fmt)
        assert load(data).orientation_grid is None


def test_extraction_fills_the_grid(prints):
    t = prints[0]
    g = t.orientation_grid
    assert g.shape == grid_shape(t.width, t.height)
    valid = g != NO_PRINT
    assert 0.3 < valid.mean() < 1.0
    # The grid's orientation (image axes) is the minutiae's direction modulo pi, negated.
    m = t.minutiae
    gi = g[(m["y"] // 16).astype(int), (m["x"] // 16).astype(int)].astype(np.float64)
    ok = gi != NO_PRINT
    d = np.deg2rad(gi[ok]) + m["angle"][ok]
    assert np.median(np.cos(2 * d)) > 0.95


# ---------------------------------------------------------------- matcher

def block_differences(probe: Template, cand: Template, rot: float, tx: float, ty: float):
    """cos 2(difference) of each valid block of the candidate landing on a valid block of the
    probe under B ~ R(rot) A + t, and the probe's cell (row, column) it lands on."""
    gp, gc = probe.orientation_grid, cand.orientation_grid
    iy, ix = np.nonzero(gc != NO_PRINT)
    dx, dy = ix * 16 + 8.0 - tx, -(iy * 16 + 8.0) - ty
    px, py = np.cos(rot) * dx + np.sin(rot) * dy, np.sin(rot) * dx - np.cos(rot) * dy
    bi, bj = np.floor(py / 16).astype(int), np.floor(px / 16).astype(int)
    inside = (bi >= 0) & (bi < gp.shape[0]) & (bj >= 0) & (bj < gp.shape[1])
    bi, bj, iy, ix = bi[inside], bj[inside], iy[inside], ix[inside]
    keep = gp[bi, bj] != NO_PRINT
    bi, bj = bi[keep], bj[keep]
    d = np.cos(2 * (np.deg2rad(gp[bi, bj].astype(np.float64) - gc[iy[keep], ix[keep]]) - rot))
    return d, bi, bj


def reference_agreement(probe: Template, cand: Template, e: dict):
    """numpy A2: rigid least-squares refit on explain()'s elastic pairs (>= 3, else its global
    transform), the candidate's valid blocks mapped into the probe's grid."""
    ea, eb = (np.asarray(v, int) for v in e["elastic_pairs"])
    if len(ea) >= 3:
        pa = np.c_[probe.minutiae["x"][ea], -probe.minutiae["y"][ea]].astype(np.float64)
        pb = np.c_[cand.minutiae["x"][eb], -cand.minutiae["y"][eb]].astype(np.float64)
        A, B = pa - pa.mean(0), pb - pb.mean(0)
        rot = np.arctan2((A[:, 0] * B[:, 1] - A[:, 1] * B[:, 0]).sum(), (A * B).sum())
        c, s = np.cos(rot), np.sin(rot)
        tx, ty = pb.mean(0) - [c * pa[:, 0].mean() - s * pa[:, 1].mean(), s * pa[:, 0].mean() + c * pa[:, 1].mean()]
    else:
        rot, (tx, ty) = e["rotation_rad"], e["translation_px"]
    d, _, _ = block_differences(probe, cand, rot, tx, ty)
    return (float(d.mean()) if len(d) else 0.0), len(d), rot


def reference_robust(probe: Template, cand: Template, e: dict, p: MatchParams = MatchParams()):
    """numpy R and the conflict region's size, from the per-block differences under the
    alignment explain() reports (scipy's labelling of A's cells, 8-connected)."""
    from scipy import ndimage

    d, bi, bj = block_differences(probe, cand, e["orientation_rotation_rad"], *e["orientation_translation_px"])
    n = len(d)
    if n == 0:
        return 0.0, 0
    c0 = np.cos(2 * np.deg2rad(p.orientation_zero_credit_deg))
    credit = np.clip((d - c0) / (1 - c0), 0, 1).sum()
    bad = d < np.cos(2 * np.deg2rad(p.orientation_conflict_deg))
    counts = np.zeros(probe.orientation_grid.shape, int)
    np.add.at(counts, (bi[bad], bj[bad]), 1)
    labels, k = ndimage.label(counts > 0, structure=np.ones((3, 3)))
    m = max((counts[labels == j].sum() for j in range(1, k + 1)), default=0)
    if m > p.orientation_conflict_max_fraction * n:
        return credit / n, 0
    return credit / (n - m) * (1 - p.orientation_conflict_weight * m / n), int(m)


def test_explain_reports_agreement_equal_to_numpy_reference(prints):
    m = FingerprintMatcher(prints[0])
    seen_genuine = False
    for cand in prints[1:]:
        e = m.explain(cand)
        if e["orientation_agreement"] is None:
            assert e["lssr_score"] < MatchParams().elastic_gate and e["score"] == e["lssr_score"]
            continue
        a2, n, rot = reference_agreement(prints[0], cand, e)
        assert e["orientation_blocks"] == n > 0
        assert e["orientation_agreement"] == pytest.approx(a2, abs=1e-5)
        assert e["orientation_rotation_rad"] == pytest.approx(rot, abs=1e-5)
        r, m_conf = reference_robust(prints[0], cand, e)
        assert e["orientation_robust_agreement"] == pytest.approx(r, abs=1e-5)
        assert e["orientation_conflict_blocks"] == m_conf
        # score = sqrt(lssr * elastic) * R at the default weight 1, in float32
        fused = np.sqrt(np.float32(e["lssr_score"]) * np.float32(e["elastic_score"]))
        assert e["orientation_factor"] == np.float32(e["orientation_robust_agreement"])
        assert e["orientation_fused_score"] == pytest.approx(float(fused * np.float32(e["orientation_factor"])),
                                                             rel=1e-6)
        # ... mapped onto the minutiae-only scale
        assert e["score"] == e["orientation_scaled_score"] == SCALE.orientation_scale(e["orientation_fused_score"])
        assert e["score"] == pytest.approx(m.match(cand), abs=0)
        if cand is prints[1]:  # a second impression of the same finger: the fields agree
            assert e["orientation_agreement"] > 0.9 and e["orientation_blocks"] > 100
            seen_genuine = True
    assert seen_genuine


def test_score_unchanged_when_either_template_has_no_grid(prints):
    bare = [without_grid(t) for t in prints]
    ref = FingerprintMatcher(bare[0]).match_many(bare)
    with_grids = FingerprintMatcher(prints[0]).match_many(prints)
    assert np.any(with_grids != ref)  # the evidence acts where both have a field
    np.testing.assert_array_equal(FingerprintMatcher(prints[0]).match_many(bare), ref)
    np.testing.assert_array_equal(FingerprintMatcher(bare[0]).match_many(prints), ref)
    off = MatchParams(orientation_weight=0.0)
    np.testing.assert_array_equal(FingerprintMatcher(prints[0], off).match_many(prints), ref)
    e = FingerprintMatcher(bare[0]).explain(prints[1])
    assert e["orientation_agreement"] is None and e["orientation_factor"] == 1.0
    assert e["orientation_fused_score"] is None and e["orientation_scaled_score"] is None
    e = FingerprintMatcher(prints[0], off).explain(prints[1])  # w = 0: no factor, no mapping
    assert e["orientation_fused_score"] is None and e["score"] == ref[1]


def test_orientation_weight_blends(prints):
    half = MatchParams(orientation_weight=0.5)
    # Without the fields, the fused score itself (the reliability curve, which maps it there
    # instead, set to the identity).
    m0 = FingerprintMatcher(without_grid(prints[0]), dataclasses.replace(
        half, reliability_scale_from=(0.0, 1.0), reliability_scale_to=(0.0, 1.0)))
    m1 = FingerprintMatcher(prints[0], half)
    checked = 0
    for cand in prints[1:]:
        e = m1.explain(cand)
        s = np.float32(m0.match(without_grid(cand)))
        if e["orientation_agreement"] is None:  # gated
            assert np.float32(m1.match(cand)) == s
            continue
        checked += 1
        f = np.float32(0.5) + np.float32(0.5) * np.float32(e["orientation_robust_agreement"])
        assert e["orientation_factor"] == f
        scale = native.Config(dataclasses.asdict(half))
        assert np.float32(m1.match(cand)) == np.float32(scale.orientation_scale(float(s * f)))
    assert checked >= 2
    with pytest.raises(InvalidInputError):
        MatchParams(orientation_weight=1.5)


def turned_patch(t: Template, rows: slice, cols: slice, by_deg: int = 90) -> Template:
    """t with the field of one patch of blocks turned (its minutiae unchanged)."""
    g = t.orientation_grid.copy()
    patch = g[rows, cols]
    on = patch != NO_PRINT
    patch[on] = ((patch[on].astype(int) + by_deg) % 180).astype(np.uint8)
    return Template(t.minutiae, t.width, t.height, t.quality, t.params_hash, g)


def test_one_conflicting_patch_counts_at_its_weight(prints):
    """The same print with a patch of its field turned 90 degrees (a scar, a turned flap of
    skin): the mean A2 falls by about twice the patch's share, R only by half of it."""
    t = prints[0]
    rows, cols = t.orientation_grid.shape
    r0, c0 = rows // 2 - 3, cols // 2 - 3
    altered = turned_patch(t, slice(r0, r0 + 6), slice(c0, c0 + 6))
    e = FingerprintMatcher(t).explain(altered)
    n, m = e["orientation_blocks"], e["orientation_conflict_blocks"]
    patch = int((t.orientation_grid[r0:r0 + 6, c0:c0 + 6] != NO_PRINT).sum())
    assert m == patch > 20 and n > 4 * m
    assert e["orientation_agreement"] == pytest.approx(1 - 2 * m / n, abs=1e-3)
    assert e["orientation_robust_agreement"] == pytest.approx(1 - 0.5 * m / n, abs=1e-3)
    r, m_ref = reference_robust(t, altered, e)
    assert e["orientation_robust_agreement"] == pytest.approx(r, abs=1e-5) and m_ref == m
    # Lambda = 1: the region counts in full (as the credit of its blocks, 0).
    full = MatchParams(orientation_conflict_weight=1.0)
    e1 = FingerprintMatcher(t, full).explain(altered)
    assert e1["orientation_robust_agreement"] == pytest.approx(1 - m / n, abs=1e-3)
    # A region beyond the bar is no patch: every block counts.
    small = MatchParams(orientation_conflict_max_fraction=0.5 * m / n)
    e2 = FingerprintMatcher(t, small).explain(altered)
    assert e2["orientation_conflict_blocks"] == 0
    assert e2["orientation_robust_agreement"] == pytest.approx(1 - m / n, abs=1e-3)


def test_zero_credit_angle_0_is_the_mean_agreement(prints):
    """Galleries from before the robust agreement read orientation_zero_credit_deg = 0: their
    factor is max(A2, 0) as it was."""
    from biomatch.params import from_json, to_json
    import json

    old = MatchParams(orientation_zero_credit_deg=0.0)
    m = FingerprintMatcher(prints[0], old)
    for cand in prints[1:]:
        e = m.explain(cand)
        if e["orientation_agreement"] is None:
            continue
        assert e["orientation_factor"] == np.float32(max(e["orientation_agreement"], 0.0))
        assert e["orientation_conflict_blocks"] == 0
    stored = json.loads(to_json(MatchParams()))
    del stored["values"]["orientation_zero_credit_deg"]  # written before the field existed
    assert from_json(json.dumps(stored), MatchParams).orientation_zero_credit_deg == 0.0


@pytest.mark.parametrize("zero_credit, conflict", [(30.0, 45.0), (60.0, 60.0), (89.0, 90.0), (10.0, 20.0)])
def test_robust_agreement_equals_reference_at_other_angles(prints, zero_credit, conflict):
    """Beyond 45 degrees a block off the probe's print (doubled-angle product 0) would sit above
    the credit's zero: it must still earn nothing."""
    p = MatchParams(orientation_zero_credit_deg=zero_credit, orientation_conflict_deg=conflict)
    checked = 0
    for i, probe in enumerate(prints[:4]):
        m = FingerprintMatcher(probe, p)
        for cand in prints[i + 1:]:
            e = m.explain(cand)
            if e["orientation_agreement"] is None:
                continue
            r, m_conf = reference_robust(probe, cand, e, p)
            assert e["orientation_robust_agreement"] == pytest.approx(r, abs=1e-5)
            assert e["orientation_conflict_blocks"] == m_conf
            checked += 1
    assert checked >= 5


def test_two_patches_set_apart_only_the_larger(prints):
    t = prints[0]
    rows, cols = t.orientation_grid.shape
    r0, c0 = rows // 2 - 4, cols // 2 - 4
    altered = turned_patch(turned_patch(t, slice(r0, r0 + 3), slice(c0, c0 + 3)),
                           slice(r0 + 5, r0 + 9), slice(c0 + 5, c0 + 9))  # two regions, 2 blocks apart
    e = FingerprintMatcher(t).explain(altered)
    big = int((t.orientation_grid[r0 + 5:r0 + 9, c0 + 5:c0 + 9] != NO_PRINT).sum())
    assert e["orientation_conflict_blocks"] == big
    r, m_ref = reference_robust(t, altered, e)
    assert e["orientation_robust_agreement"] == pytest.approx(r, abs=1e-5) and m_ref == big


@pytest.mark.parametrize("field, value", [("orientation_zero_credit_deg", -1.0), ("orientation_zero_credit_deg", 91.0),
                                          ("orientation_conflict_deg", 20.0), ("orientation_conflict_weight", 1.5),
                                          ("orientation_conflict_max_fraction", 1.0),
                                          ("orientation_conflict_weight", True)])
def test_robust_agreement_params_are_validated(field, value):
    with pytest.raises(InvalidInputError, match=field):
        MatchParams(**{field: value})


def test_gated_pairs_keep_lssr(prints):
    """A pair below the elastic gate skips the stage and the orientation term: score = lssr."""
    gated = 0
    for i, probe in enumerate(prints):
        m = FingerprintMatcher(probe)
        for cand in prints[i + 1:]:
            e = m.explain(cand)
            if e["lssr_score"] < MatchParams().elastic_gate:
                gated += 1
                assert e["orientation_agreement"] is None and e["score"] == e["lssr_score"]
                assert m.match(cand) == FingerprintMatcher(without_grid(probe)).match(without_grid(cand))
    assert gated > 0


def test_kernels_give_identical_scores_with_grids(prints):
    d = dataclasses.asdict(MatchParams())
    results = {}
    for name in native.available_kernels():
        mod = native.load_kernel(name)
        cfg = mod.Config(d)
        prep = [mod.prepare(cfg, t.as_float_array(), t.orientation_grid) for t in prints]
        assert all(p.has_orientation_grid for p in prep)
        rows = [mod.match_many(cfg, p, prep, 1) for p in prep]
        explained = [[mod.explain(cfg, p, q)["score"] for q in prep] for p in prep]
        np.testing.assert_array_equal(np.array(explained, np.float32), np.array(rows))
        results[name] = np.array(rows)
    assert "portable" in results
    for name, got in results.items():
        np.testing.assert_array_equal(got, results["portable"], err_msg=name)


def test_match_many_prepared_and_threads_equal_match(prints):
    m = FingerprintMatcher(prints[0])
    loop = np.array([m.match(c) for c in prints], np.float32)
    gallery = [prepare(t) for t in prints]
    for n_threads in (1, 2):
        np.testing.assert_array_equal(m.match_many(gallery, n_threads=n_threads), loop)
    np.testing.assert_array_equal(m.match_many(prints), loop)


# ---------------------------------------------------------------- one score scale

FUSED_AT_FMR = {0.01: 0.0650, 0.001: 0.0869, 0.0001: 0.0966}  # the fused scores' own thresholds (robust R)


def test_shipped_thresholds_are_the_minutiae_only_ones():
    assert SCORE_AT_FMR == {0.01: 0.0692, 0.001: 0.0915, 0.0001: 0.1105}
    p = MatchParams()
    assert p.orientation_scale_from == (0.0, *FUSED_AT_FMR.values(), 1.0)
    assert p.orientation_scale_to == (0.0, *SCORE_AT_FMR.values(), 1.0)


def test_mapping_is_monotone_and_exact_at_its_points():
    p = MatchParams()
    for x, y in zip(p.orientation_scale_from, p.orientation_scale_to):
        assert SCALE.orientation_scale(x) == np.float32(y)
    for fmr, fused in FUSED_AT_FMR.items():
        assert SCALE.orientation_scale(fused) == np.float32(SCORE_AT_FMR[fmr])
    xs = np.concatenate([np.linspace(0, 1, 20001, dtype=np.float32),
                         np.nextafter(np.float32(p.orientation_scale_from), np.float32(-1)),
                         np.nextafter(np.float32(p.orientation_scale_from), np.float32(2)),
                         np.float32(p.orientation_scale_from)])
    xs = np.sort(xs[(xs >= 0) & (xs <= 1)])
    ys = np.array([SCALE.orientation_scale(float(x)) for x in xs], np.float32)
    assert np.all(np.diff(ys) >= 0)
    assert ys[0] == 0 and ys[-1] == 1  # clamped like every score
    # above the last threshold: the segment to (1, 1), so strong scores keep their order
    slope = (1.0 - 0.1105) / (1.0 - FUSED_AT_FMR[0.0001])
    assert SCALE.orientation_scale(0.2) == pytest.approx(0.1105 + (0.2 - FUSED_AT_FMR[0.0001]) * slope, rel=1e-5)
    assert SCALE.orientation_scale(0.6) < SCALE.orientation_scale(0.8) < 1.0
    assert SCALE.orientation_scale(0.05) == pytest.approx(0.05 * 0.0692 / FUSED_AT_FMR[0.01], rel=1e-5)


@pytest.mark.parametrize("bad", [dict(orientation_scale_from=(0.0,), orientation_scale_to=(0.0,)),
                                 dict(orientation_scale_from=(0.0, 0.1, 0.1), orientation_scale_to=(0, 0.1, 0.2)),
                                 dict(orientation_scale_to=(0.0, 0.1, 0.09, 0.2)),
                                 dict(orientation_scale_to=(0.0, 0.1)),
                                 dict(orientation_scale_from=(0.0, float("nan"), 1.0, 2.0)),
                                 dict(orientation_scale_from="0.1")])
def test_mapping_points_are_validated(bad):
    with pytest.raises(InvalidInputError, match="orientation_scale"):
        MatchParams(**bad)


def test_mapping_params_round_trip_and_reach_the_native_core():
    from biomatch.params import from_json, to_json
    p = MatchParams(orientation_scale_from=[0, 0.5], orientation_scale_to=[0, 0.25])
    assert p.orientation_scale_from == (0.0, 0.5)
    assert from_json(to_json(p), MatchParams) == p
    assert native.Config(dataclasses.asdict(p)).orientation_scale(0.4) == np.float32(0.2)
    with pytest.raises(ValueError):
        native.Config({**dataclasses.asdict(p), "orientation_scale_to": (0.0,)})


def test_pair_scoring_at_a_fused_threshold_maps_to_the_minutiae_only_threshold(prints):
    """A real pair with grids: put a curve point exactly at its fused score, sending it to the
    0.1% threshold; the default curve sends each fused threshold to the shipped one."""
    m = FingerprintMatcher(prints[0])
    e = m.explain(prints[1])
    fused = e["orientation_fused_score"]
    assert fused is not None and 0 < fused < 1
    p = MatchParams(orientation_scale_from=(0.0, fused, 1.0), orientation_scale_to=(0.0, SCORE_AT_FMR[0.001], 1.0))
    mp = FingerprintMatcher(prints[0], p)
    assert mp.match(prints[1]) == np.float32(SCORE_AT_FMR[0.001])
    assert mp.explain(prints[1])["orientation_fused_score"] == fused
    np.testing.assert_array_equal(mp.match_many([prints[1]]), np.float32([SCORE_AT_FMR[0.001]]))


def test_pair_without_grids_is_not_mapped(prints):
    """Without a field on either side the score is the minutiae-only one whatever the curve."""
    bare = [without_grid(t) for t in prints]
    ref = FingerprintMatcher(bare[0]).match_many(bare)
    odd = MatchParams(orientation_scale_from=(0.0, 0.01, 1.0), orientation_scale_to=(0.0, 0.5, 0.6))
    for probe, cands in ((bare[0], bare), (bare[0], prints), (prints[0], bare)):
        np.testing.assert_array_equal(FingerprintMatcher(probe, odd).match_many(cands), ref)
    # with the fields, only the pairs through the factor move
    with_grids = FingerprintMatcher(prints[0], odd)
    for cand, r in zip(prints, ref):
        e = with_grids.explain(cand)
        if e["orientation_fused_score"] is None:
            assert e["score"] == r
        else:
            assert e["score"] != r
