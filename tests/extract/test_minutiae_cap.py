"""The minutiae cap is a density (ExtractionParams.max_minutiae per max_minutiae_area_mm2): rolled prints
keep their minutiae, plain ones are capped as before."""

from __future__ import annotations

import numpy as np

from biomatch.extract import minutiae_cap
from biomatch.params import ExtractionParams

PX_PER_MM = 500 / 25.4


def _mask(area_mm2):
    side = int(round(np.sqrt(area_mm2) * PX_PER_MM))
    m = np.zeros((side + 10, side + 10), np.uint8)
    m[:side, :side] = 1
    return m


def test_plain_prints_keep_the_fixed_cap():
    p = ExtractionParams()
    for area in (50, 150, 299):
        assert minutiae_cap(_mask(area), p) == p.max_minutiae


def test_large_prints_scale_with_area():
    p = ExtractionParams()
    assert minutiae_cap(_mask(600), p) in (160, 161)     # twice the area, twice the cap
    assert minutiae_cap(_mask(450), p) in (120, 121)
    assert minutiae_cap(_mask(600), ExtractionParams(max_minutiae_area_mm2=0.0)) == 80


def test_rolled_print_keeps_more_minutiae_than_80():
    """A generated rolled print (about 500 mm^2, ~130 true minutiae) is no longer cut at 80."""
    from biomatch import extract
    from biomatch.datasets.tenprint import TenprintParams, make_card

    c = make_card(1, 3, TenprintParams(swap_rate=0.0, missing_rate=0.0, hand_swap_rate=0.0))
    t = extract(c.images["rolled_03.png"], 500)
    assert len(t.minutiae) > 90
    capped = extract(c.images["rolled_03.png"], 500, ExtractionParams(max_minutiae_area_mm2=0.0))
    assert len(capped.minutiae) == 80
