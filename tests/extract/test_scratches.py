"""The light-scratch stage: long thin light lines inside the print are no evidence, spots stay."""

from dataclasses import replace

import cv2
import numpy as np

from biomatch.extract import extract
from biomatch.extract.scratches import neutralise_scratches, scratch_mask
from biomatch.extract.segmentation import normalise
from biomatch.params import ExtractionParams


def _worn_print(size=240, period=9.0, amplitude=18.0, seed=0):
    """Low-contrast oblique ridges (a worn finger) with sensor noise, ridges dark."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # Gently curved ridges so that the print has minutiae-free, regular flow.
    phase = 2 * np.pi * (xx * np.cos(0.3) + yy * np.sin(0.3) + 0.0008 * (xx - size / 2) ** 2) / period
    img = 140.0 + amplitude * np.cos(phase) + rng.normal(0, 2.0, (size, size))
    return img


def _line(img, x0, y0, x1, y1, value=230.0, width=2):
    out = img.copy()
    n = int(np.hypot(x1 - x0, y1 - y0)) * 2
    on = np.zeros(img.shape, bool)
    for t in np.linspace(0, 1, n):
        x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
        on[int(round(y)):int(round(y)) + width, int(round(x)):int(round(x)) + width] = True
    out[on] = value
    return out, on


def _u8(img):
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_a_scratch_across_worn_ridges_is_found_and_nothing_else():
    p = ExtractionParams()
    img, on = _line(_worn_print(), 40, 60, 200, 180)  # 200 px long, across the ridges
    grey = _u8(img)
    mask = np.ones(grey.shape, np.uint8)
    s = scratch_mask(normalise(grey, p), mask, p)
    inner = np.zeros_like(on)
    inner[20:-20, 20:-20] = True
    assert s[on & inner].mean() > 0.8          # the line, away from the image edge
    near = cv2.dilate(on.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    assert s[~near].mean() < 0.002              # and next to nothing elsewhere


def test_light_spots_and_the_print_edge_are_not_scratches():
    p = ExtractionParams()
    img = _worn_print()
    rng = np.random.default_rng(1)
    for x, y in rng.integers(30, 210, (12, 2)):   # pores / dust: 3 x 3 light spots
        img[y:y + 3, x:x + 3] = 230.0
    img[:, 200:] = 230.0                          # the background beside the print
    grey = _u8(img)
    mask = np.zeros(grey.shape, np.uint8)
    mask[:, :200] = 1
    assert not scratch_mask(normalise(grey, p), mask, p).any()


def test_disabled_and_unchanged_without_scratches():
    p = ExtractionParams()
    grey = _u8(_worn_print())
    norm = normalise(grey, p)
    out, s = neutralise_scratches(norm, np.ones(grey.shape, np.uint8), p)
    assert out is norm and not s.any()
    img, _ = _line(_worn_print(), 40, 60, 200, 180)
    g2 = _u8(img)
    off = replace(p, scratch_depth_sigma=0.0)
    n2 = normalise(g2, off)
    out, s = neutralise_scratches(n2, np.ones(g2.shape, np.uint8), off)
    assert out is n2 and not s.any()


def test_fewer_false_minutiae_along_a_scratch():
    img, on = _line(_worn_print(size=300, seed=3), 50, 70, 250, 220)
    grey = _u8(img)
    near = cv2.dilate(on.astype(np.uint8), np.ones((13, 13), np.uint8)) > 0

    def along(params):
        t = extract(grey, 500, params)
        m = t.minutiae
        return int(near[np.clip(m["y"].astype(int), 0, 299), np.clip(m["x"].astype(int), 0, 299)].sum())

    with_stage = along(ExtractionParams())
    without = along(ExtractionParams(scratch_depth_sigma=0.0))
    assert without >= 4, without               # the scratch does break the ridges into endings
    assert with_stage <= without // 2, (with_stage, without)
