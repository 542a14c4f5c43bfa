"""Minutia reliability in the matcher (MatchParams.lssr_reliability_weight,
elastic_reliability_weight, reliability_scale_from / _to): behaviour, neutrality where qualities
say nothing, the legacy value, the score scale."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from biomatch.errors import InvalidInputError
from biomatch.match import SCORE_AT_FMR, FingerprintMatcher
from biomatch.params import MatchParams, from_json, to_json
from biomatch.template import Template

import biomatch._native as native

ON = MatchParams()
OFF = MatchParams(lssr_reliability_weight=0.0, elastic_reliability_weight=0.0)


def _print(rng, n=40, size=400):
    pts = []
    while len(pts) < n:
        p = rng.uniform(60, size - 60, 2)
        if all(np.hypot(*(p - q)) > 14 for q in pts):
            pts.append(p)
    return np.array(pts), rng.uniform(0, 2 * np.pi, n)


def _template(pts, ang, quality, size=400):
    return Template.from_arrays(pts[:, 0], pts[:, 1], ang, quality=np.asarray(quality, np.uint8),
                                width=size, height=size)


def _pair(seed=3, n=40, spurious=10):
    """A print and a jittered impression of it to which ``spurious`` minutiae were added inside
    the common area (the extractor's false minutiae: no partner in the first)."""
    rng = np.random.default_rng(seed)
    pts, ang = _print(rng, n)
    pts2 = pts + rng.normal(0, 1.5, pts.shape)
    ang2 = ang + np.deg2rad(rng.normal(0, 4, n))
    extra, extra_ang = _print(rng, spurious)
    return (pts, ang), (np.vstack([pts2, extra]), np.concatenate([ang2, extra_ang])), rng


def test_an_unpaired_minutia_of_low_quality_costs_less():
    (pa, aa), (pb, ab), rng = _pair()
    qa = rng.integers(70, 101, len(pa))
    qb_true = rng.integers(70, 101, len(pa))
    probe = _template(pa, aa, qa)
    faint = _template(pb, ab, np.concatenate([qb_true, np.full(10, 25)]))  # spurious ones faint
    clear = _template(pb, ab, np.concatenate([qb_true, np.full(10, 95)]))  # ... or clear
    m = FingerprintMatcher(probe, dataclasses.replace(ON, orientation_weight=0.0))
    ef, ec = m.explain(faint), m.explain(clear)
    assert ef["n_elastic_consistent"] == ec["n_elastic_consistent"] >= 30
    assert ef["elastic_score"] > ec["elastic_score"]
    assert ef["score"] > ec["score"]
    # Off, the qualities change nothing.
    off = FingerprintMatcher(probe, OFF)
    assert off.match(faint) == off.match(clear)


@pytest.mark.parametrize("quality", [0, 100, 37])
def test_templates_without_varying_qualities_score_as_before(quality):
    """All 0 ("not reported" in ISO/ANSI records) or one value for all: the unweighted score,
    unmapped -- the same float as with both weights 0."""
    (pa, aa), (pb, ab), rng = _pair(seed=5)
    probe = _template(pa, aa, rng.integers(20, 101, len(pa)))  # varying
    flat = _template(pb, ab, np.full(len(pb), quality))
    assert FingerprintMatcher(probe, ON).match(flat) == FingerprintMatcher(probe, OFF).match(flat)
    assert FingerprintMatcher(flat, ON).match(probe) == FingerprintMatcher(flat, OFF).match(probe)


def test_weight_zero_is_the_legacy_value_of_stored_parameter_sets():
    stored = to_json(OFF)
    # A parameter set written before the fields existed reads with weight 0: the old scores.
    import json

    payload = json.loads(stored)
    for k in ("lssr_reliability_weight", "elastic_reliability_weight", "reliability_scale_from",
              "reliability_scale_to"):
        del payload["values"][k]
    old = from_json(json.dumps(payload), MatchParams)
    assert old.lssr_reliability_weight == 0.0 and old.elastic_reliability_weight == 0.0
    assert ON.lssr_reliability_weight > 0 and ON.elastic_reliability_weight > 0


def test_match_many_equals_match_with_reliability():
    (pa, aa), (pb, ab), rng = _pair(seed=9)
    probe = _template(pa, aa, rng.integers(20, 101, len(pa)))
    cands = [_template(pb + rng.normal(0, 1, pb.shape), ab, rng.integers(20, 101, len(pb))) for _ in range(20)]
    m = FingerprintMatcher(probe, ON)
    loop = np.array([m.match(c) for c in cands], np.float32)
    for n_threads in (1, 2):
        np.testing.assert_array_equal(m.match_many(cands, n_threads=n_threads), loop)


def test_every_kernel_gives_identical_scores_with_reliability():
    (pa, aa), (pb, ab), rng = _pair(seed=11)
    probe = _template(pa, aa, rng.integers(20, 101, len(pa)))
    cands = [_template(pb, ab, rng.integers(20, 101, len(pb)))] + [
        _template(*_print(rng), rng.integers(20, 101, 40)) for _ in range(20)]
    d = dataclasses.asdict(dataclasses.replace(ON, elastic_gate=0.0))
    scores = {}
    for name in native.available_kernels():
        mod = native.load_kernel(name)
        cfg = mod.Config(d)
        prepared = [mod.prepare(cfg, c.as_float_array()) for c in cands]
        scores[name] = mod.match_many(cfg, mod.prepare(cfg, probe.as_float_array()), prepared, 1)
    for name, got in scores.items():
        np.testing.assert_array_equal(got, scores["portable"], err_msg=name)
    assert scores["portable"][0] > 3 * max(scores["portable"][1:])


def test_reliability_scale_is_monotone_and_sends_its_thresholds_to_the_table():
    p = MatchParams()
    assert p.reliability_scale_to == (0.0, *SCORE_AT_FMR.values(), 1.0)
    cfg = native.Config(dataclasses.asdict(p))
    for x, y in zip(p.reliability_scale_from, p.reliability_scale_to):
        assert cfg.reliability_scale(x) == np.float32(y)
    xs = np.linspace(0, 1, 5001, dtype=np.float32)
    ys = np.array([cfg.reliability_scale(float(x)) for x in xs], np.float32)
    assert np.all(np.diff(ys) >= 0) and ys[0] == 0 and ys[-1] == 1


@pytest.mark.parametrize("bad", [dict(lssr_reliability_weight=-0.1), dict(elastic_reliability_weight=1.5),
                                 dict(reliability_scale_from=(0.0,), reliability_scale_to=(0.0,)),
                                 dict(reliability_scale_to=(0.0, 0.2, 0.1, 0.3, 1.0)),
                                 dict(reliability_scale_to=(0.0, 1.0))])
def test_parameters_are_validated(bad):
    with pytest.raises(InvalidInputError):
        MatchParams(**bad)
