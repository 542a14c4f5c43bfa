"""prepare()'s fast cylinder construction against the reference sums of cylinder_values, bit for bit."""

import dataclasses

import numpy as np
import pytest

from biomatch import _native as native
from biomatch.match import prepare
from biomatch.params import MatchParams
from biomatch.template import Template


def random_template(rng, n, size):
    xy = rng.uniform(20, size - 20, (n, 2))
    return Template.from_arrays(xy[:, 0], xy[:, 1], rng.uniform(0, 2 * np.pi, n), width=size, height=size)


@pytest.mark.parametrize("overrides", [
    {},
    {"spatial_cells": 8, "angular_cells": 4},
    {"spatial_cells": 20, "angular_cells": 9},  # rows not a multiple of 8, boxes over 8 cells
    {"spatial_cells": 11, "angular_cells": 1, "sigma_spatial_px": 12.0},
    {"spatial_cells": 16, "angular_cells": 12, "hull_margin_px": 0.0, "cell_threshold": 0.002},
])
def test_prepared_bits_equal_thresholded_reference(overrides):
    p = MatchParams(**overrides)
    cfg = native.Config(dataclasses.asdict(p))
    rng = np.random.default_rng(7)
    for n, size in [(3, 120), (12, 200), (40, 400), (60, 300)]:
        t = random_template(rng, n, size)
        values, cells, valid = native.cylinder_values(cfg, t.as_float_array())
        idx, bits, mask = prepare(t, p)._native.cylinders(cfg)
        assert np.array_equal(np.flatnonzero(valid), idx)
        for row, m in enumerate(idx):
            want_mask = np.broadcast_to(cells[m], values[m].shape).ravel()
            want_bits = (values[m].ravel() > p.cell_threshold) & want_mask
            got = np.unpackbits(bits[row].view(np.uint8), bitorder="little")[: want_bits.size].astype(bool)
            got_mask = np.unpackbits(mask[row].view(np.uint8), bitorder="little")[: want_bits.size].astype(bool)
            assert np.array_equal(got_mask, want_mask)
            assert np.array_equal(got, want_bits)
