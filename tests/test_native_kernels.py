"""The native core's kernels: one module per instruction set, chosen when it loads.

Every kernel this machine runs is compared with the portable one (always built and always run),
cylinder bits and scores, bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

import biomatch._native as native  # part of the package: a broken build fails, never skips
from biomatch.errors import InvalidInputError
from biomatch.params import MatchParams
from biomatch.template import NO_PRINT, Template, grid_shape

P = MatchParams()


def random_template(rng, n=45, size=400):
    pts = rng.uniform(20, size - 20, (n, 2))
    return Template.from_arrays(pts[:, 0], pts[:, 1], rng.uniform(0, 2 * np.pi, n), width=size, height=size)


def moved(t, rng, angle_deg=12.0, shift=(4.0, -3.0), jitter_px=2.0):
    a = np.deg2rad(angle_deg)
    xy = t.as_float_array()[:, :2].astype(np.float64) - 200
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    xy = np.clip(xy @ rot.T + 200 + shift + rng.normal(0, jitter_px, xy.shape), 1, 398)
    th = t.as_float_array()[:, 2] - a + rng.normal(0, np.deg2rad(3), len(xy))
    return Template.from_arrays(xy[:, 0], xy[:, 1], np.mod(th, 2 * np.pi), width=400, height=400)


def scores_per_kernel(params: MatchParams, probe, cands):
    """{kernel: match_many scores}, each kernel preparing the templates (and their orientation
    grids, if any) itself."""
    d = dataclasses.asdict(params)
    out = {}
    for name in native.available_kernels():
        mod = native.load_kernel(name)
        cfg = mod.Config(d)
        assert cfg.kernel == mod.kernel == name
        pc = [mod.prepare(cfg, c.as_float_array(), c.orientation_grid) for c in cands]
        out[name] = mod.match_many(cfg, mod.prepare(cfg, probe.as_float_array(), probe.orientation_grid), pc, 1)
    return out


def with_qualities_and_grid(t, rng):
    """t with varied minutia qualities and a smooth orientation grid (a whorl about a random
    centre) whose left columns are unprinted: what the reliability weights and the
    orientation-field term need."""
    rows, cols = grid_shape(400, 400)
    yy, xx = np.mgrid[:rows, :cols]
    grid = (np.degrees(np.arctan2(yy - rng.uniform(8, 16), xx - rng.uniform(8, 16))) % 180).astype(np.uint8)
    grid[:, : rng.integers(0, 6)] = NO_PRINT
    m = t.minutiae
    return Template.from_arrays(m["x"], m["y"], m["angle"], quality=rng.integers(20, 101, len(m)), width=400,
                                height=400, orientation_grid=grid)


def test_portable_is_always_built_and_the_default_is_the_fastest_the_cpu_runs():
    assert native.KERNELS == ("portable", "avx2", "avx512")
    available = native.available_kernels()
    assert available[0] == "portable"
    assert set(available) <= set(native.built_kernels())
    if "BIOMATCH_KERNEL" not in os.environ:
        assert native.kernel == available[-1]
    assert native.Config(dataclasses.asdict(P)).kernel == native.kernel


def test_every_kernel_gives_the_portable_scores_bit_for_bit():
    rng = np.random.default_rng(12)
    probe = random_template(rng)
    cands = [moved(probe, rng)] + [random_template(rng, n=int(n)) for n in rng.integers(5, 70, 30)]
    scores = scores_per_kernel(P, probe, cands)
    for name, got in scores.items():
        np.testing.assert_array_equal(got, scores["portable"], err_msg=name)
    assert scores["portable"][0] > 2 * max(scores["portable"][1:])  # the mate is found at all
    # Other cylinder sizes take other unrolled paths (1..4 chunks of 8 words) or the portable loop.
    for ns, nd in ((8, 4), (12, 6), (16, 8), (20, 8)):
        s2 = scores_per_kernel(dataclasses.replace(P, spatial_cells=ns, angular_cells=nd), probe, cands[:10])
        for name, got in s2.items():
            np.testing.assert_array_equal(got, s2["portable"], err_msg=f"{name} {ns}x{nd}")


def test_every_kernel_gives_the_portable_scores_with_qualities_and_orientation_grids():
    """The reliability-weighted LSS-R and elastic overlaps and the orientation-field agreement
    (vectorised per kernel) run only where both templates report qualities and carry grids."""
    rng = np.random.default_rng(21)
    probe = with_qualities_and_grid(random_template(rng), rng)
    cands = [with_qualities_and_grid(moved(probe, rng), rng) for _ in range(8)]
    cands += [with_qualities_and_grid(random_template(rng, n=int(n)), rng) for n in rng.integers(5, 70, 24)]
    scores = scores_per_kernel(P, probe, cands)
    for name, got in scores.items():
        np.testing.assert_array_equal(got, scores["portable"], err_msg=name)
    # The paths were taken: the mates went through the elastic stage and the orientation term.
    cfg = native.Config(dataclasses.asdict(P))
    ex = [native.explain(cfg, native.prepare(cfg, probe.as_float_array(), probe.orientation_grid),
                         native.prepare(cfg, c.as_float_array(), c.orientation_grid)) for c in cands[:8]]
    assert all(e["n_elastic_consistent"] >= 3 and e["orientation_agreement"] is not None for e in ex)
    assert scores["portable"][:8].min() > scores["portable"][8:].max()


def test_every_kernel_builds_the_same_cylinders():
    rng = np.random.default_rng(3)
    t = random_template(rng, n=60)
    d = dataclasses.asdict(P)
    got = {}
    for name in native.available_kernels():
        mod = native.load_kernel(name)
        cfg = mod.Config(d)
        got[name] = mod.prepare(cfg, t.as_float_array()).cylinders(cfg)
        got[name + " values"] = mod.cylinder_values(cfg, t.as_float_array())
    for name in native.available_kernels():
        for a, b in zip(got[name], got["portable"]):
            np.testing.assert_array_equal(a, b, err_msg=name)
        for a, b in zip(got[name + " values"], got["portable values"]):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_pair_tables_are_the_same_in_every_kernel_and_within_a_float_of_the_exact_angles():
    rng = np.random.default_rng(5)
    t = random_template(rng, n=70)
    # Every direction, exact zeros and axis-aligned pairs included (atan2's special cases).
    xy = t.as_float_array().copy()
    xy[1] = xy[0] + [0, 0, 0, 0]
    xy[2, :2] = xy[0, :2] + [10, 0]
    xy[3, :2] = xy[0, :2] + [0, 10]
    xy[4, :2] = xy[0, :2] + [-10, 0]
    xy[5, :2] = xy[0, :2] + [0, -10]
    d = dataclasses.asdict(P)
    got = {}
    for name in native.available_kernels():
        mod = native.load_kernel(name)
        got[name] = mod.prepare(mod.Config(d), xy).pair_tables()
    for name, tables in got.items():
        for a, b in zip(tables, got["portable"]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    dist, rel, radial = got["portable"]
    x, y = xy[:, 0].astype(np.float64), -xy[:, 1].astype(np.float64)  # the y-up working frame
    th = np.mod(xy[:, 2].astype(np.float64), 2 * np.pi)
    exact = np.mod(np.arctan2(y[None, :] - y[:, None], x[None, :] - x[:, None]) - th[:, None], 2 * np.pi)
    err = np.abs(radial - exact)
    err = np.minimum(err, 2 * np.pi - err)
    assert err.max() < 1e-6  # a few float ulps at 2 pi (4.8e-7 each)
    assert radial.min() >= 0 and radial.max() < 2 * np.pi
    np.testing.assert_allclose(dist, np.hypot(x[None, :] - x[:, None], y[None, :] - y[:, None]), rtol=1e-6, atol=1e-4)
    assert abs(radial[0, 1] - np.mod(-th[0], 2 * np.pi)) < 1e-6  # two minutiae at one place: atan2(0, 0) = 0


def test_prepare_keeps_no_state_between_parameter_sets_or_threads():
    """prepare() keeps a per-thread builder per Config: alternating Configs (and threads) must
    give what a fresh process gives."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(9)
    ts = [random_template(rng, n=int(n)) for n in (20, 45, 70)]
    params = [P, dataclasses.replace(P, spatial_cells=12, angular_cells=6), dataclasses.replace(P, radius_px=50.0)]
    cfgs = [native.Config(dataclasses.asdict(p)) for p in params]
    alone = [[native.prepare(native.Config(dataclasses.asdict(p)), t.as_float_array()).cylinders(c)
              for t in ts] for p, c in zip(params, cfgs)]

    def run(order):
        return [(k, i, native.prepare(cfgs[k], ts[i].as_float_array()).cylinders(cfgs[k])) for k, i in order]

    orders = [[(k, i) for i in range(3) for k in perm] for perm in ((0, 1, 2), (2, 0, 1), (1, 2, 0), (0, 2, 1))]
    with ThreadPoolExecutor(4) as pool:
        for results in pool.map(run, orders):
            for k, i, cyl in results:
                for a, b in zip(cyl, alone[k][i]):
                    np.testing.assert_array_equal(a, b)
    # A Config made after another was freed may reuse its address: it must not reuse its builder.
    for p in params[::-1]:
        cfg = native.Config(dataclasses.asdict(p))
        k = params.index(p)
        for a, b in zip(native.prepare(cfg, ts[1].as_float_array()).cylinders(cfg), alone[k][1]):
            np.testing.assert_array_equal(a, b)
        del cfg


def test_an_unknown_or_unsupported_kernel_is_a_typed_error():
    with pytest.raises(InvalidInputError, match="kernel: expected one of portable, avx2, avx512, got 'gpu'"):
        native.load_kernel("gpu")
    for name in set(native.KERNELS) - set(native.available_kernels()):
        with pytest.raises(InvalidInputError, match=f"'{name}' is not"):
            native.load_kernel(name)


def _run(code: str, kernel: str | None):
    env = {k: v for k, v in os.environ.items() if k != "BIOMATCH_KERNEL"}
    if kernel is not None:
        env["BIOMATCH_KERNEL"] = kernel
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kernel", native.available_kernels())
def test_the_environment_variable_forces_a_kernel(kernel):
    r = _run("import biomatch._native as n; print(n.kernel)", kernel)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == kernel
    r = _run("from biomatch.cli import main; main(['--version'])", kernel)
    assert f"kernel {kernel}" in r.stdout, r.stdout + r.stderr


def test_a_bad_environment_variable_fails_loudly_naming_it():
    r = _run("import biomatch._native", "avx1024")
    assert r.returncode != 0
    assert "BIOMATCH_KERNEL='avx1024'" in r.stderr and "InvalidInputError" in r.stderr


# Preparation by every kernel against the reference sums (cylinder_values), bit for bit: the fast
# path's spans within reach, pair list, mirrored angular terms and bit masks must decide every cell
# as the reference does.


def _prepared_equal_reference(mod, params: MatchParams, t) -> None:
    cfg = mod.Config(dataclasses.asdict(params))
    values, cells, valid = mod.cylinder_values(cfg, t.as_float_array())
    idx, bits, mask = mod.prepare(cfg, t.as_float_array()).cylinders(cfg)
    np.testing.assert_array_equal(idx, np.flatnonzero(valid), err_msg=f"{mod.kernel}: valid cylinders")
    for row, m in enumerate(idx):
        want_mask = np.broadcast_to(cells[m], values[m].shape).ravel()
        want_bits = (values[m].ravel() > params.cell_threshold) & want_mask
        got = np.unpackbits(bits[row].view(np.uint8), bitorder="little")[: want_bits.size].astype(bool)
        got_mask = np.unpackbits(mask[row].view(np.uint8), bitorder="little")[: want_bits.size].astype(bool)
        np.testing.assert_array_equal(got_mask, want_mask, err_msg=f"{mod.kernel}: mask of minutia {m}")
        np.testing.assert_array_equal(got, want_bits, err_msg=f"{mod.kernel}: bits of minutia {m}")


def _edge_case_templates(rng) -> list:
    from biomatch.datasets.synthetic import REGISTRY_POPULATION, template_impressions

    out = [template_impressions(seed, 1, REGISTRY_POPULATION)[0] for seed in (1003, 1010, 1041)]
    out += [random_template(rng, n=80, size=350), random_template(rng, n=130, size=500)]  # pairs over 64-bit words
    # Minutia 0 has two neighbours (min_neighbours), one exactly at a cylinder's reach (R + 3 sigma_S
    # = 98 px), and one just past it; a duplicate (offset 0); a hull wide enough for valid
    # cylinders.  Then a collinear set (a hull without area).
    x = np.array([150.0, 248.0, 200.0, 150.0, 150.0, 150.0, 49.0, 260.0, 260.0, 260.0])
    y = np.array([200.0, 200.0, 200.0, 298.0001, 99.0, 301.0, 200.0, 110.0, 110.0, 290.0])
    out.append(Template.from_arrays(x, y, rng.uniform(0, 2 * np.pi, 10), width=400, height=400))
    x = np.array([50.0, 148.0, 200.0, 201.0, 250.0, 330.0])
    out.append(Template.from_arrays(x, x * 0.5 + 20, rng.uniform(0, 2 * np.pi, 6), width=400, height=400))
    return out


@pytest.mark.parametrize("overrides", [
    {},
    {"spatial_cells": 20, "angular_cells": 9},  # odd planes: the middle one's centre is 0
    {"spatial_cells": 11, "angular_cells": 1, "sigma_spatial_px": 12.0},
    {"spatial_cells": 64, "angular_cells": 3, "min_neighbours": 1},  # spans over 16 cells, 64-cell rows
    {"spatial_cells": 16, "angular_cells": 12, "hull_margin_px": 0.0, "cell_threshold": 0.002},
])
def test_every_kernel_prepares_the_reference_cylinders(overrides):
    params = MatchParams(**overrides)
    templates = _edge_case_templates(np.random.default_rng(21))
    for name in native.available_kernels():
        mod = native.load_kernel(name)
        for t in templates:
            _prepared_equal_reference(mod, params, t)
