"""Tests of biomatch.match: native kernels against numpy references, behaviour, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from biomatch.errors import BiomatchError, IncompatibleTemplateError, InvalidInputError
from biomatch.match import FingerprintMatcher, PreparedTemplate, prepare
from biomatch.params import MatchParams
from biomatch.template import Template

import biomatch._native as native  # noqa: E402  (part of the package: a broken build fails, never skips)

P = MatchParams()


def random_template(rng, n=45, size=400):
    """Minutiae spread like a real print: random points at least 10 px apart."""
    pts = []
    while len(pts) < n:
        p = rng.uniform(40, size - 40, 2)
        if all(np.hypot(*(p - q)) > 10 for q in pts):
            pts.append(p)
    pts = np.array(pts)
    return Template.from_arrays(pts[:, 0], pts[:, 1], rng.uniform(0, 2 * np.pi, n), width=size, height=size)


def transformed(t, angle_deg, dx, dy, jitter_px, jitter_deg, rng, size=400):
    m = t.minutiae
    a = np.deg2rad(angle_deg)
    cx = cy = size / 2
    # Image y is down and angles are counter-clockwise as displayed: rotate in a y-up frame.
    x, y = m["x"] - cx, -(m["y"] - cy)
    xr = np.cos(a) * x - np.sin(a) * y + cx + dx + rng.normal(0, jitter_px, len(m))
    yr = -(np.sin(a) * x + np.cos(a) * y) + cy + dy + rng.normal(0, jitter_px, len(m))
    ang = m["angle"] + a + np.deg2rad(rng.normal(0, jitter_deg, len(m)))
    return Template.from_arrays(xr, yr, ang, width=size + 200, height=size + 200)


# ---------------------------------------------------------------- numpy references

def ref_cylinders(xyaq, p: MatchParams):
    """Slow reference of the cell sums and validity (Cappelli et al. 2010, Section 3)."""
    from scipy.special import erf  # scipy comes with scikit-image

    n = len(xyaq)
    x, y = xyaq[:, 0].astype(np.float64), -xyaq[:, 1].astype(np.float64)
    th = np.mod(xyaq[:, 2].astype(np.float64), 2 * np.pi)
    ns, nd, r = p.spatial_cells, p.angular_cells, p.radius_px
    ds, dd = 2 * r / ns, 2 * np.pi / nd
    ss, sd = p.sigma_spatial_px, np.deg2rad(p.sigma_angular_deg)
    centre = ds * (np.arange(ns) - (ns - 1) / 2)
    values = np.zeros((n, nd, ns, ns))
    cells = np.zeros((n, ns, ns), bool)
    wrap = lambda a: (a + np.pi) % (2 * np.pi) - np.pi  # noqa: E731
    hull = ref_hull(np.stack([x, y], 1))
    for m in range(n):
        c, s = np.cos(th[m]), np.sin(th[m])
        for i in range(ns):
            for j in range(ns):
                u, v = centre[i], centre[j]
                px, py = x[m] + u * c - v * s, y[m] + u * s + v * c
                cells[m, i, j] = u * u + v * v <= r * r and ref_in_hull(hull, px, py, p.hull_margin_px)
                for t in range(n):
                    d = np.hypot(x[t] - px, y[t] - py)
                    if t == m or d > 3 * ss:
                        continue
                    cs = np.exp(-d * d / (2 * ss * ss)) / (ss * np.sqrt(2 * np.pi))
                    dth = wrap(th[t] - th[m])
                    for k in range(nd):
                        a = wrap(-np.pi + (k + 0.5) * dd - dth)
                        cd = 0.5 * (erf((a + dd / 2) / (sd * np.sqrt(2))) - erf((a - dd / 2) / (sd * np.sqrt(2))))
                        values[m, k, i, j] += cs * cd
    return values, cells


def ref_hull(pts):
    pts = sorted(map(tuple, pts))
    cross = lambda o, a, b: (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])  # noqa: E731
    lower, upper = [], []
    for q in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], q) <= 0:
            lower.pop()
        lower.append(q)
    for q in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], q) <= 0:
            upper.pop()
        upper.append(q)
    return np.array(lower[:-1] + upper[:-1])


def ref_in_hull(hull, px, py, margin):
    inside, best = True, np.inf
    for i in range(len(hull)):
        a, b = hull[i], hull[(i + 1) % len(hull)]
        if (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0]) < 0:
            inside = False
        ab, ap = b - a, np.array([px, py]) - a
        tt = np.clip(ap @ ab / max(ab @ ab, 1e-12), 0, 1)
        best = min(best, np.hypot(*(ap - tt * ab)))
    return inside or best <= margin


def test_cylinder_values_match_numpy_reference():
    rng = np.random.default_rng(1)
    t = random_template(rng, n=7, size=160)
    p = MatchParams(spatial_cells=8, angular_cells=4)
    cfg = native.Config(dataclasses.asdict(p))
    xyaq = t.as_float_array()
    values, cells, valid = native.cylinder_values(cfg, xyaq)
    ref_values, ref_cells = ref_cylinders(xyaq, p)
    np.testing.assert_allclose(values, ref_values, atol=2e-5, rtol=1e-3)
    np.testing.assert_array_equal(cells.astype(bool), ref_cells)


def popcount(a):
    return int(np.unpackbits(a.view(np.uint8)).sum())


def test_local_similarity_matches_numpy_reference():
    rng = np.random.default_rng(2)
    a, b = random_template(rng), random_template(rng)
    pa, pb = prepare(a, P), prepare(b, P)
    cfg = native.Config(dataclasses.asdict(P))
    ia, bits_a, mask_a = pa._native.cylinders(cfg)
    ib, bits_b, mask_b = pb._native.cylinders(cfg)
    assert len(ia) > 5 and len(ib) > 5
    checked = 0
    for u in range(len(ia)):
        for v in range(len(ib)):
            dtheta = abs((a.minutiae["angle"][ia[u]] - b.minutiae["angle"][ib[v]] + np.pi) % (2 * np.pi) - np.pi)
            got = native.cylinder_similarity(cfg, pa._native, int(ia[u]), pb._native, int(ib[v]))
            if np.rad2deg(dtheta) > P.max_angle_diff_deg + 1e-3:
                assert got == 0.0
                continue
            ca, cb = bits_a[u] & mask_b[v], bits_b[v] & mask_a[u]
            common = popcount(mask_a[u] & mask_b[v])
            den = np.sqrt(popcount(ca)) + np.sqrt(popcount(cb))
            if common < np.ceil(P.min_matchable_cells_fraction * cfg.disc_cells) or den == 0:
                want = 0.0
            else:
                want = 1 - np.sqrt(popcount(ca ^ cb)) / den
            assert got == pytest.approx(want, abs=1e-5)
            checked += 1
    assert checked > 100


def test_bits_are_inside_mask_and_match_thresholded_values():
    # Packed disc cells unpack to the full layout: cells outside the disc are never set.
    rng = np.random.default_rng(3)
    t = random_template(rng, n=20, size=250)
    cfg = native.Config(dataclasses.asdict(P))
    values, cells, valid = native.cylinder_values(cfg, t.as_float_array())
    idx, bits, mask = prepare(t, P)._native.cylinders(cfg)
    assert np.array_equal(np.flatnonzero(valid), idx)
    for row, m in enumerate(idx):
        want_mask = np.broadcast_to(cells[m], values[m].shape).ravel()
        want_bits = (values[m].ravel() > P.cell_threshold) & want_mask
        got_bits = np.unpackbits(bits[row].view(np.uint8), bitorder="little")[: want_bits.size].astype(bool)
        got_mask = np.unpackbits(mask[row].view(np.uint8), bitorder="little")[: want_bits.size].astype(bool)
        assert np.array_equal(got_mask, want_mask)
        assert np.array_equal(got_bits, want_bits)


# ---------------------------------------------------------------- behaviour

def test_self_match_scores_high():
    t = random_template(np.random.default_rng(4))
    assert FingerprintMatcher(t).match(t) > 0.9


@pytest.mark.parametrize("angle", [-30, -10, 0, 15, 30])
def test_rotated_translated_jittered_copy_scores_well_above_random(angle):
    rng = np.random.default_rng(100 + angle)
    t = random_template(rng)
    copy = transformed(t, angle, 35, -20, jitter_px=2.0, jitter_deg=4.0, rng=rng)
    m = FingerprintMatcher(t)
    impostors = m.match_many([random_template(rng) for _ in range(20)])
    genuine = m.match(copy)
    assert genuine > 3 * impostors.max()
    assert genuine > 0.1


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_empty_and_tiny_templates_score_zero(n):
    rng = np.random.default_rng(6)
    full = random_template(rng)
    tiny = Template.from_arrays(full.minutiae["x"][:n], full.minutiae["y"][:n], full.minutiae["angle"][:n],
                                width=400, height=400)
    assert FingerprintMatcher(tiny).match(full) == 0.0
    assert FingerprintMatcher(full).match(tiny) == 0.0
    assert FingerprintMatcher(tiny).match(tiny) == 0.0
    assert FingerprintMatcher(full).explain(tiny)["score"] == 0.0


def test_deterministic_and_match_many_equals_loop():
    rng = np.random.default_rng(7)
    probe = random_template(rng)
    cands = [transformed(probe, 10, 5, 5, 2, 3, rng)] + [random_template(rng) for _ in range(40)]
    m = FingerprintMatcher(probe)
    loop = np.array([m.match(c) for c in cands], np.float32)
    prepared = [prepare(c) for c in cands]
    for n_threads in (1, 2, 3):
        got = m.match_many(prepared, n_threads=n_threads)
        assert got.dtype == np.float32 and got.shape == (len(cands),)
        np.testing.assert_array_equal(got, loop)
    np.testing.assert_array_equal(m.match_many(cands), loop)
    # Native fast path (all PreparedTemplates) vs the validating path (mixed list), any sequence.
    np.testing.assert_array_equal(m.match_many(tuple(prepared)), loop)
    np.testing.assert_array_equal(m.match_many(prepared[:-1] + [cands[-1]]), loop)
    assert FingerprintMatcher(probe).match(cands[0]) == m.match(cands[0])
    assert m.match_many([]).shape == (0,)


def test_explain_has_stable_keys_and_agrees_with_match():
    rng = np.random.default_rng(8)
    probe = random_template(rng)
    cand = transformed(probe, 20, 0, 0, 1.5, 3, rng)
    m = FingerprintMatcher(probe)
    e = m.explain(cand)
    assert set(e) == {"valid_cylinders", "lss_pairs", "lss_similarity", "relaxed_similarity", "n_pairs",
                      "top_pairs", "top_relaxed_similarity", "lssr_score", "rotation_rad", "translation_px",
                      "consistent_pairs", "n_consistent", "overlap", "global_score", "elastic_pairs",
                      "n_elastic_consistent", "elastic_overlap", "elastic_score", "orientation_agreement",
                      "orientation_blocks", "orientation_robust_agreement", "orientation_conflict_blocks",
                      "orientation_rotation_rad", "orientation_translation_px",
                      "orientation_factor", "orientation_fused_score", "orientation_scaled_score", "score"}
    assert e["score"] == pytest.approx(m.match(cand))
    assert e["n_consistent"] > 20
    # The fitted rotation is the one applied (y-up frame, counter-clockwise).
    assert np.rad2deg(e["rotation_rad"]) == pytest.approx(20, abs=3)


def test_global_weight_blends_terms():
    rng = np.random.default_rng(9)
    probe = random_template(rng)
    cand = transformed(probe, 5, 3, 3, 2, 3, rng)
    e = FingerprintMatcher(probe, MatchParams(global_weight=0.5, elastic_anchors=0)).explain(cand)
    assert e["score"] == pytest.approx(np.sqrt(e["lssr_score"] * e["global_score"]), rel=1e-5)


PE = MatchParams()  # the elastic stage is on by default
P0 = MatchParams(elastic_anchors=0)


def distorted(t, angle_deg, strain, rng, size=400):
    """Rotated copy stretched radially about the print centre by ``strain`` (skin distortion)."""
    m = t.minutiae
    cx = cy = size / 2
    x, y = m["x"] - cx, m["y"] - cy
    k = 1 + strain * np.hypot(x, y) / size
    t2 = Template.from_arrays(x * k + cx, y * k + cy, m["angle"], width=size, height=size)
    return transformed(t2, angle_deg, 0, 0, 1.0, 3, rng)


def test_elastic_term_rewards_distorted_genuine_copy():
    rng = np.random.default_rng(12)
    probe = random_template(rng)
    cand = distorted(probe, 25, 0.25, rng)
    on, off = FingerprintMatcher(probe, PE), FingerprintMatcher(probe, P0)
    e = on.explain(cand)
    assert e["score"] == pytest.approx(np.sqrt(e["lssr_score"] * e["elastic_score"]), rel=1e-5)
    assert e["score"] == pytest.approx(on.match(cand))
    assert e["n_elastic_consistent"] >= 20
    assert len(e["elastic_pairs"][0]) == e["n_elastic_consistent"]
    assert on.match(cand) > off.match(cand)
    impostors = [random_template(rng) for _ in range(20)]
    assert max(on.match_many([prepare(c, PE) for c in impostors])) < 0.3 * on.match(cand)
    # Off (elastic_anchors=0): the elastic term is not computed and the score is LSS-R.
    e0 = off.explain(cand)
    assert e0["elastic_score"] == 0 and e0["score"] == pytest.approx(e0["lssr_score"])


def test_elastic_gate_and_clustering():
    rng = np.random.default_rng(14)
    probe = random_template(rng)
    cands = [distorted(probe, 10, 0.2, rng)] + [random_template(rng) for _ in range(40)]
    ungated = FingerprintMatcher(probe, MatchParams(elastic_gate=0.0))
    gated = FingerprintMatcher(probe, PE)
    gate = PE.elastic_gate
    n_out = 0
    for c in cands:
        e, u = gated.explain(c), ungated.explain(c)
        assert e["lssr_score"] == u["lssr_score"]
        if e["lssr_score"] < gate:  # skipped: the score is lssr, below the gate
            n_out += 1
            assert e["score"] == pytest.approx(e["lssr_score"]) and e["score"] < gate
            assert e["n_elastic_consistent"] == 0 and e["elastic_score"] == 0
        else:  # above the gate: exactly the ungated score
            assert e["score"] == u["score"]
    assert n_out > 0
    # Skipping anchors aligned like a tried one keeps a distorted genuine copy's score high.
    no_cluster = FingerprintMatcher(probe, MatchParams(elastic_cluster_px=0.0))
    assert gated.match(cands[0]) == pytest.approx(no_cluster.match(cands[0]), rel=0.1)
    with pytest.raises(InvalidInputError):
        MatchParams(elastic_gate=-0.1)
    with pytest.raises(InvalidInputError):
        MatchParams(elastic_cluster_px=-1.0)
    with pytest.raises(InvalidInputError):
        MatchParams(elastic_cluster_deg=0.0)


def test_elastic_stage_gives_identical_scores_on_every_kernel():
    import dataclasses

    rng = np.random.default_rng(15)
    probe = random_template(rng)
    cands = [distorted(probe, -20, 0.2, rng)] + [random_template(rng) for _ in range(30)]
    d = dataclasses.asdict(dataclasses.replace(PE, elastic_gate=0.0))
    scores = {}
    for name in native.available_kernels():
        mod = native.load_kernel(name)
        cfg = mod.Config(d)
        prepared = [mod.prepare(cfg, c.as_float_array()) for c in cands]
        scores[name] = mod.match_many(cfg, mod.prepare(cfg, probe.as_float_array()), prepared, 1)
    for name, got in scores.items():
        np.testing.assert_array_equal(got, scores["portable"], err_msg=name)
    assert scores["portable"][0] > 3 * max(scores["portable"][1:])


def test_elastic_match_many_equals_match():
    rng = np.random.default_rng(13)
    probe = random_template(rng)
    cands = [distorted(probe, -15, 0.2, rng)] + [random_template(rng) for _ in range(30)]
    m = FingerprintMatcher(probe, PE)
    loop = np.array([m.match(c) for c in cands], np.float32)
    for n_threads in (1, 2):
        np.testing.assert_array_equal(m.match_many([prepare(c, PE) for c in cands], n_threads=n_threads), loop)


# ---------------------------------------------------------------- errors

def test_bad_inputs_raise_typed_errors():
    t = random_template(np.random.default_rng(10))
    m = FingerprintMatcher(t)
    with pytest.raises(InvalidInputError):
        FingerprintMatcher(np.zeros((5, 4), np.float32))
    with pytest.raises(InvalidInputError):
        m.match("template")
    with pytest.raises(InvalidInputError):
        m.match_many([t, None])
    with pytest.raises(InvalidInputError):
        m.match_many(t)
    with pytest.raises(InvalidInputError):
        m.match_many([t], n_threads=0)
    with pytest.raises(InvalidInputError):
        FingerprintMatcher(t, params={"radius_px": 70})
    with pytest.raises(InvalidInputError):
        MatchParams(radius_px=-1)
    with pytest.raises(InvalidInputError):
        MatchParams(pairs_min=8, pairs_max=4)


def test_prepared_with_other_params_is_refused():
    t = random_template(np.random.default_rng(11))
    other = prepare(t, MatchParams(radius_px=60.0))
    assert isinstance(other, PreparedTemplate)
    with pytest.raises(IncompatibleTemplateError):
        FingerprintMatcher(t).match(other)
    with pytest.raises(IncompatibleTemplateError):
        FingerprintMatcher(t).match_many([prepare(t), other])
    with pytest.raises(BiomatchError):
        FingerprintMatcher(other)


# ---------------------------------------------------------------- the native parameter table

# MatchParams' annotation -> the C++ type of its row in native/mcc_params.def.
NATIVE_TYPES = {"float": "float", "int": "int", "tuple[float, ...]": "std::vector<float>"}


def test_native_parameter_table_equals_matchparams():
    """MatchParams and the C++ table (native/mcc_params.def): the same fields, in the same order,
    of matching types, with the same defaults (floats as the float32 the C++ struct holds)."""
    table = native.mcc_params_fields()
    fields = dataclasses.fields(MatchParams)
    assert [f.name for f in fields] == [name for name, _, _ in table]
    for f, (name, ctype, default) in zip(fields, table):
        assert NATIVE_TYPES[f.type] == ctype, name
        if ctype == "int":
            assert type(default) is int and default == f.default, name
        else:
            np.testing.assert_array_equal(np.float32(default), np.float32(f.default), err_msg=name)


def test_native_config_takes_every_field_and_no_other():
    d = dataclasses.asdict(P)
    cfg = native.Config(d)
    assert cfg.params.keys() == d.keys()
    for name, value in cfg.params.items():
        np.testing.assert_array_equal(np.float32(value), np.float32(d[name]), err_msg=name)
    with pytest.raises(ValueError, match="missing field 'elastic_gate'"):
        native.Config({k: v for k, v in d.items() if k != "elastic_gate"})
    with pytest.raises(ValueError, match="unknown field 'radius_mm'"):
        native.Config({**d, "radius_mm": 1.0})


def test_relaxation_compatibility_uses_each_pair_as_reference():
    # rho(t, k) measures the segment t -> k from t's direction; an exact copy keeps every
    # relaxed similarity equal to its initial one scaled alike, so the self score stays ~1.
    rng = np.random.default_rng(13)
    t = random_template(rng, n=30)
    e = FingerprintMatcher(t).explain(t)
    assert len(e["lss_pairs"][0]) == 30
    assert all(a == b for a, b in zip(*e["lss_pairs"]))
    assert e["lssr_score"] > 0.9
