"""A small print keeps the blocks bordering its ridge area; a full print does not."""

from __future__ import annotations

import numpy as np
import pytest

from biomatch.datasets.degrade import apply_condition, condition_rng
from biomatch.datasets.synthetic import impression, master
from biomatch.extract import extract
from biomatch.extract.segmentation import refine_mask, widen_small_print
from biomatch.params import WORKING_DPI, ExtractionParams

B = 16
PX_PER_MM2 = (WORKING_DPI / 25.4) ** 2


def _maps(periodic_blocks):
    """A 12 x 12-block foreground (192 px square) whose period map is periodic on the given
    (row, col) blocks only."""
    period = np.zeros((12, 12), np.float32)
    for r, c in periodic_blocks:
        period[r, c] = 9.0
    mask = np.zeros((12 * B, 12 * B), np.uint8)
    mask[8:-8, 8:-8] = 1  # the foreground stops 8 px short of the image edge
    return mask, period


def _square(r0, c0, n):
    return [(r, c) for r in range(r0, r0 + n) for c in range(c0, c0 + n)]


def test_a_small_print_gains_the_bordering_blocks_inside_the_inset_foreground():
    p = ExtractionParams()
    mask, period = _maps(_square(4, 4, 4))  # 4 x 4 periodic blocks: ~10 mm^2 of ridges
    refined = refine_mask(mask, period, p)
    wide = widen_small_print(mask, refined, period, p)
    assert refined.sum() / PX_PER_MM2 < p.small_print_area_mm2
    assert np.all(wide >= refined) and wide.sum() > refined.sum()
    kept = refined.astype(bool)
    added = wide.astype(bool) & ~kept
    # Every added pixel lies in a block next to a kept block, never two blocks away ...
    kept_blocks = {(y // B, x // B) for y, x in zip(*np.nonzero(kept))}
    for y, x in zip(*np.nonzero(added)):
        assert any(abs(y // B - r) <= 1 and abs(x // B - c) <= 1 for r, c in kept_blocks)
    # ... and at least the inset inside the foreground: none within 12 px of its edge.
    inset = int(p.small_print_edge_inset_px)
    edge_band = mask.astype(bool) & ~np.pad(mask[inset:-inset, inset:-inset], inset).astype(bool)
    assert not (added & edge_band).any()
    # The bordering ring of a square of blocks that sits well inside the foreground: all of it.
    ring = np.zeros_like(kept)
    ring[(4 - 1) * B:(8 + 1) * B, (4 - 1) * B:(8 + 1) * B] = True
    assert np.array_equal(wide.astype(bool), ring | kept)


def test_a_print_at_or_above_the_bar_and_the_switch_leave_the_refined_mask_as_it_is():
    mask, period = _maps(_square(4, 4, 4))
    refined = refine_mask(mask, period, ExtractionParams())
    area_mm2 = float(refined.sum() / PX_PER_MM2)
    at_bar = ExtractionParams(small_print_area_mm2=area_mm2)
    assert widen_small_print(mask, refined, period, at_bar) is refined
    above = ExtractionParams(small_print_area_mm2=area_mm2 * 1.01)
    assert widen_small_print(mask, refined, period, above).sum() > refined.sum()
    off = ExtractionParams(small_print_area_mm2=0.0)
    assert widen_small_print(mask, refined, period, off) is refined


def _contact_print(seed=7):
    imp = impression(master(seed), seed + 1)
    d = apply_condition(imp.image, WORKING_DPI, "contact:64", condition_rng("test", str(seed), "contact:64"))
    return d.image


def test_a_light_touch_keeps_more_of_its_print_and_the_same_orientation_evidence():
    img = _contact_print()
    cap_on, cap_off = {}, {}
    on = extract(img, WORKING_DPI, capture=cap_on)
    off = extract(img, WORKING_DPI, ExtractionParams(small_print_area_mm2=0.0), capture=cap_off)
    assert cap_off["mask"].sum() / PX_PER_MM2 < ExtractionParams().small_print_area_mm2
    assert np.all(cap_on["mask"] >= cap_off["mask"]) and cap_on["mask"].sum() > cap_off["mask"].sum()
    assert len(on) >= len(off)
    # The clear ridge area is what the switched-off extraction keeps as its mask.
    assert np.array_equal(cap_on["ridge_mask"], cap_off["mask"])
    # The matcher's orientation evidence reads the clear ridge area only, on or off.
    assert np.array_equal(on.orientation_grid, off.orientation_grid)


@pytest.mark.parametrize("seed", [3, 11])
def test_a_full_print_is_not_widened(seed):
    imp = impression(master(seed), seed + 1)
    cap = {}
    t = extract(imp.image, WORKING_DPI, capture=cap)
    assert cap["ridge_mask"].sum() / PX_PER_MM2 >= ExtractionParams().small_print_area_mm2
    assert np.array_equal(cap["mask"], cap["ridge_mask"])
    off = extract(imp.image, WORKING_DPI, ExtractionParams(small_print_area_mm2=0.0))
    assert np.array_equal(t.minutiae, off.minutiae) and t.quality == off.quality
    assert np.array_equal(t.orientation_grid, off.orientation_grid)
