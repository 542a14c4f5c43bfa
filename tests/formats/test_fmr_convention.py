"""The minutia direction convention of each standard, pinned on synthetic prints.

ISO/IEC 19794-2 and ANSI/INCITS 378 point a ridge ending "up the ridge" (from its end into the
ridge body) and a bifurcation "down the valley" between its branches, and so do biomatch's
templates (NIST's internal representation points the other way). A print of straight ridges where one ridge
stops (or one valley stops: two ridges merge) has a minutia whose direction is known exactly, so
the angle byte each codec writes is checked against the standard, not against our own reader.
"""

import numpy as np
import pytest

from biomatch.extract import extract
from biomatch.formats import dump, load
from biomatch.template import BIFURCATION, ENDING

PERIOD_PX = 9.0
SIDE_PX = 320
# byte offset of the first minutia's angle in a one-view record written by biomatch
ANGLE_OFFSET = {"iso19794-2:2005": 24 + 4 + 4, "iso19794-2:2011": 15 + 4 + 14 + 1 + 5 + 13 + 4,
                "ansi378": 26 + 4 + 4}
STEP_DEG = {"iso19794-2:2005": 360 / 256, "iso19794-2:2011": 360 / 256, "ansi378": 2.0}


def _stripes():
    yy, xx = np.mgrid[0:SIDE_PX, 0:SIDE_PX].astype(float)
    return 128 + 100 * np.cos(2 * np.pi * yy / PERIOD_PX), yy, xx  # ridges (dark) at y = T/2 + kT


def ridge_ending(body_left: bool) -> np.ndarray:
    """Horizontal ridges; the middle one stops at the centre, its body on the left (or right)."""
    img, yy, xx = _stripes()
    y0 = PERIOD_PX / 2 + int(SIDE_PX / 2 / PERIOD_PX) * PERIOD_PX
    gone = (xx > SIDE_PX / 2) if body_left else (xx < SIDE_PX / 2)
    img[(np.abs(yy - y0) < PERIOD_PX / 2) & gone] = 228
    return img.astype(np.uint8)


def bifurcation_branches_left() -> np.ndarray:
    """Horizontal ridges; right of the centre the middle valley is filled: one stem to the right,
    two branches to the left."""
    img, yy, xx = _stripes()
    yv = int(SIDE_PX / 2 / PERIOD_PX) * PERIOD_PX
    img[(np.abs(yy - yv) < PERIOD_PX / 2) & (xx > SIDE_PX / 2)] = 28
    return img.astype(np.uint8)


def _only_minutia(img):
    t = extract(img, 500)
    assert len(t) == 1, f"the synthetic print should give one minutia, got {len(t)}"
    return t


def _deg_diff(a, b):
    return abs((a - b + 180) % 360 - 180)


# (image, kind, the standard's angle), counter-clockwise as displayed (y down)
CASES = {
    "ending, ridge body left": (lambda: ridge_ending(True), ENDING, 180),
    "ending, ridge body right": (lambda: ridge_ending(False), ENDING, 0),
    # transposed: the ridge body is above the end; "up the ridge" points up the screen
    "ending, ridge body above": (lambda: ridge_ending(True).T.copy(), ENDING, 90),
    "bifurcation, branches left": (bifurcation_branches_left, BIFURCATION, 180),
    "bifurcation, branches below": (lambda: np.ascontiguousarray(bifurcation_branches_left()[:, ::-1].T),
                                    BIFURCATION, 270),
}


@pytest.fixture(scope="module")
def extracted():
    return {name: _only_minutia(make()) for name, (make, *_rest) in CASES.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_biomatch_direction_is_the_standards(extracted, case):
    _, kind, ours = CASES[case]
    m = extracted[case].minutiae
    assert m["kind"][0] == kind
    assert _deg_diff(float(np.degrees(m["angle"][0])), ours) < 10


@pytest.mark.parametrize("fmt", list(ANGLE_OFFSET))
@pytest.mark.parametrize("case", list(CASES))
def test_standard_records_point_up_the_ridge_and_down_the_valley(extracted, case, fmt):
    _, _, standard = CASES[case]
    data = dump(extracted[case], fmt)
    written = data[ANGLE_OFFSET[fmt]] * STEP_DEG[fmt]
    assert _deg_diff(written, standard) < 10, f"{fmt} wrote {written} deg, the standard says {standard}"
    back = load(data)
    assert _deg_diff(float(np.degrees(back.minutiae["angle"][0])), standard) < 10
