"""The pair-histogram kernel against its plain formulation (the slow reference), bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

_TWO_PI = 2.0 * math.pi


def _reference(pts, offsets, max_distance, n_dist, n_angle):
    """The kernel as first written: Python's float and int ``%`` for every wrap."""
    from numba import njit

    @njit
    def run(pts, offsets, max_distance, n_dist, n_angle):
        t_count = offsets.shape[0] - 1
        out = np.zeros((t_count, n_dist * n_angle * n_angle), np.float32)
        md2 = max_distance * max_distance
        d_scale = n_dist / max_distance
        a_scale = n_angle / _TWO_PI
        for t in range(t_count):
            a, b = offsets[t], offsets[t + 1]
            for i in range(a, b):
                for j in range(a, b):
                    if i == j:
                        continue
                    dx = pts[j, 0] - pts[i, 0]
                    dy = pts[i, 1] - pts[j, 1]
                    d2 = dx * dx + dy * dy
                    if d2 > md2:
                        continue
                    phi = math.atan2(dy, dx)
                    fd = math.sqrt(d2) * d_scale - 0.5
                    fi = ((pts[i, 2] - phi) % _TWO_PI) * a_scale - 0.5
                    fj = ((pts[j, 2] - phi) % _TWO_PI) * a_scale - 0.5
                    d0 = int(math.floor(fd))
                    i0 = int(math.floor(fi))
                    j0 = int(math.floor(fj))
                    wd, wi, wj = fd - d0, fi - i0, fj - j0
                    for sd in range(2):
                        db = d0 + sd
                        if db < 0:
                            db = 0
                        if db >= n_dist:
                            continue
                        w1 = wd if sd else 1.0 - wd
                        for si in range(2):
                            ib = (i0 + si) % n_angle
                            w2 = w1 * (wi if si else 1.0 - wi)
                            for sj in range(2):
                                jb = (j0 + sj) % n_angle
                                out[t, (db * n_angle + ib) * n_angle + jb] += w2 * (wj if sj else 1.0 - wj)
        return out

    return run(pts, offsets, max_distance, n_dist, n_angle)


def _points(templates):
    from biomatch.retrieval.codes import _batch_points

    return _batch_points(templates)


@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_is_bit_identical_to_the_plain_formulation(seed):
    from biomatch.datasets.synthetic import template_impressions
    from biomatch.retrieval import _codes_nb as nb
    from biomatch.template import MINUTIA_DTYPE, Template

    rng = np.random.default_rng(seed)
    ts = [t for s in range(300) for t in template_impressions(1000 * seed + s, 2)]
    # Edge angles: 0, just below 2 pi, and minutiae on one line (phi exactly 0 or pi).
    m = np.zeros(6, MINUTIA_DTYPE)
    m["x"] = [10, 20, 30, 10, 10, 40]
    m["y"] = [10, 10, 10, 40, 80, 10]
    m["angle"] = [0.0, np.nextafter(np.float32(2 * np.pi), np.float32(0)), np.float32(np.pi), 0.0,
                  np.float32(np.pi / 2), 1e-7]
    ts.append(Template(m, 100, 100, 60, "synthetic"))
    m2 = np.zeros(40, MINUTIA_DTYPE)
    m2["x"], m2["y"] = rng.uniform(0, 300, 40), rng.uniform(0, 300, 40)
    m2["angle"] = rng.uniform(0, 2 * np.pi, 40).astype(np.float32) % np.float32(2 * np.pi)
    ts.append(Template(m2, 320, 320, 60, "synthetic"))
    pts, off = _points(ts)
    for args in ((150.0, 12, 10), (80.0, 5, 7), (400.0, 3, 4)):
        got = nb.pair_histograms(pts, off, *args)
        want = _reference(pts, off, *args)
        assert got.dtype == want.dtype and np.array_equal(got, want), args
