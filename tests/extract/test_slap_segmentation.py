"""Slap segmentation (biomatch.extract.slap): the real NIST Type-4 slaps, positions, typed errors, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _util import need_dataset, synthetic_ridges
from biomatch.errors import InvalidInputError, NotASlapError
from biomatch.extract.slap import SlapParams, segment_slap

# Boxes of each fingertip in NIST's type4-slaps.an2k (inked card slaps, 500 ppi, with printed
# text, handwriting and punched holes), drawn by eye on the images (x0, y0, x1, y1).  The
# segmenter's boxes must overlap them with IoU >= 0.65: two of its boxes are known to be loose
# -- the right index (2) takes in the edge of a neighbouring print at the image's left border,
# the left little finger (10) a handwritten scribble just above it -- the others reach 0.85+.
EYE_BOXES = {
    13: {2: (120, 480, 420, 950), 3: (400, 0, 710, 520), 4: (790, 0, 1070, 444), 5: (1216, 390, 1500, 756)},
    14: {10: (176, 636, 456, 924), 9: (430, 70, 754, 566), 8: (760, 0, 1060, 350), 7: (1136, 144, 1430, 600)},
}
MIN_IOU = 0.65


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.fixture(scope="module")
def nist_slaps():
    from biomatch.formats.an2k import read_enrolment

    path = need_dataset("samples/nist_libbiomeval/type4-slaps.an2k")
    tx = read_enrolment(path)
    return {img.position: img for img in tx.finger_images}


@pytest.mark.parametrize("fgp", [13, 14])
def test_real_type4_slaps_every_finger_found_at_its_position(nist_slaps, fgp):
    img = nist_slaps[fgp]
    seg = segment_slap(img.pixels, img.ppi, fgp, quality=False)
    assert seg.missing == ()
    got = seg.by_position()
    assert sorted(got) == sorted(EYE_BOXES[fgp])
    for pos, eye in EYE_BOXES[fgp].items():
        assert _iou(got[pos].box, eye) >= MIN_IOU, (pos, got[pos].box, eye)
    # image order: right slap index..little from the left, left slap little..index
    xs = [f.position for f in seg.fingers]
    assert xs == ([2, 3, 4, 5] if fgp == 13 else [10, 9, 8, 7])
    for f in seg.fingers:  # upright crops at the slap's resolution, white where not the finger
        h, w = f.image.shape
        assert f.image.dtype == np.uint8 and 200 <= w <= 500 and 250 <= h <= 700


def test_nist_slap_at_1000_ppi_gives_the_same_boxes_scaled(nist_slaps):
    import cv2

    img = nist_slaps[13]
    big = cv2.resize(img.pixels, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    seg = segment_slap(big, 1000, "right4", quality=False)
    for pos, eye in EYE_BOXES[13].items():
        box = seg.by_position()[pos].box
        assert _iou(tuple(v / 2 for v in box), eye) >= MIN_IOU, (pos, box)


def test_missing_finger_leaves_its_gap(nist_slaps):
    """Blank the right middle finger: 2, 4, 5 found, 3 reported missing (not invented)."""
    img = nist_slaps[13].pixels.copy()
    x0, y0, x1, y1 = EYE_BOXES[13][3]
    img[:, x0 - 30:x1 + 30] = 255
    img[:, x0 - 30:x1 + 30][:600] = 255
    seg = segment_slap(img, 500, "right4", quality=False)
    assert seg.missing == (3,)
    assert [f.position for f in seg.fingers] == [2, 4, 5]


def test_missing_little_finger_by_the_arc(nist_slaps):
    """Cut the little finger (rightmost) away: the three left are index, middle, ring, not middle..little."""
    img = nist_slaps[13].pixels.copy()
    img[:, 1180:] = 255
    seg = segment_slap(img, 500, "right4", quality=False)
    assert seg.missing == (5,)
    assert [f.position for f in seg.fingers] == [2, 3, 4]


def test_absent_fingers_are_never_given_a_print(nist_slaps):
    """``absent`` (the record's amputation codes) takes those slots out of the choice: the print
    of the little finger is not given to another position, and 5 is reported missing."""
    full = segment_slap(nist_slaps[13].pixels, 500, "right4", quality=False).by_position()
    seg = segment_slap(nist_slaps[13].pixels, 500, "right4", quality=False, absent=[5])
    assert seg.missing == (5,) and sorted(seg.by_position()) == [2, 3, 4]
    for pos, f in seg.by_position().items():
        assert f.box == full[pos].box
    # two prints left after the index and middle fingers are blanked, told 2 and 3 are absent
    img = nist_slaps[14].pixels.copy()
    img[:, 750:] = 255
    seg = segment_slap(img, 500, "left4", quality=False, absent=(8, 7))
    assert seg.missing == (8, 7) and [f.position for f in seg.fingers] == [10, 9]


def test_two_missing_neighbours_placed_by_the_records_codes():
    """Generated card 31 of seed 23 (the left index and middle missing): by the arc alone its ring
    and little fingers were taken for middle and ring (the intake refused the card); told which
    are absent, they are placed right."""
    from biomatch.datasets.tenprint import TenprintParams, make_card

    card = make_card(31, 23, TenprintParams(swap_rate=0.0, hand_swap_rate=0.0, missing_rate=0.03))
    truth = card.truth["slaps"]["left4"]
    want = {f["position"]: f["box"] for f in truth["fingers"] if f["box"] is not None}
    absent = [f["position"] for f in truth["fingers"] if f["missing"]]
    assert sorted(want) == [9, 10] and sorted(absent) == [7, 8]
    seg = segment_slap(card.images[truth["image"]], 500, "left4", quality=False, absent=absent)
    got = seg.by_position()
    assert sorted(got) == [9, 10] and sorted(seg.missing) == [7, 8]
    for pos, box in want.items():
        assert _iou(got[pos].box, box) >= 0.8, (pos, got[pos].box, box)


@pytest.mark.parametrize("seed, card, spacing_mm, pair", [
    (11, 24, 18.5, (3, 4)),   # middle and ring pressed together (2.2 mm of overlap flattened), slanted seam
    (41, 35, 16.0, (2, 3)),   # index pressed against the middle, lower: no notch, no valley
])
def test_touching_generated_tips_split_along_their_seam(seed, card, spacing_mm, pair):
    """Generated right slaps whose tips touch: each tip's box is its own (IoU >= 0.8), where a
    vertical cut at the notch gave one tip 4 mm of the other, and where no cut lost a finger."""
    from biomatch.datasets.tenprint import TenprintParams, make_card

    params = TenprintParams(swap_rate=0.5, hand_swap_rate=0.1, missing_rate=0.03) if seed == 11 else \
        TenprintParams(swap_rate=0.0, hand_swap_rate=0.0, missing_rate=0.03, finger_spacing_mm=spacing_mm)
    c = make_card(card, seed, params)
    truth = c.truth["slaps"]["right4"]
    assert any(t[:2] == list(pair) and t[2] < 0 for t in truth["touching"])  # pressed together
    got = segment_slap(c.images[truth["image"]], 500, "right4", quality=False).by_position()
    for f in truth["fingers"]:
        assert f["position"] in got and _iou(got[f["position"]].box, f["box"]) >= 0.8, (f, got.get(f["position"]))


def test_a_slap_whose_fingers_are_all_absent_is_empty_not_an_error():
    """Both thumbs amputated (XX in the record): the thumbs slap shows no fingertip, as declared."""
    seg = segment_slap(np.full((1500, 1600), 255, np.uint8), 500, "thumbs", quality=False, absent=(1, 6))
    assert seg.fingers == () and seg.missing == (6, 1)
    with pytest.raises(NotASlapError):
        segment_slap(np.full((1500, 1600), 255, np.uint8), 500, "thumbs", quality=False, absent=(1,))


@pytest.mark.parametrize("bad", [(1,), (6,), ("2",), 3, (True,)])
def test_absent_outside_the_slap_names_the_argument(nist_slaps, bad):
    with pytest.raises(InvalidInputError, match="absent"):
        segment_slap(nist_slaps[13].pixels, 500, "right4", quality=False, absent=bad)


def test_quality_is_reported(nist_slaps):
    img = nist_slaps[14]
    seg = segment_slap(img.pixels, img.ppi, "left4", quality=True)
    assert all(isinstance(f.quality, int) and 0 < f.quality <= 100 for f in seg.fingers)


def test_blank_image_is_not_a_slap():
    with pytest.raises(NotASlapError, match="image: .*no ridge pattern"):
        segment_slap(np.full((1000, 1600), 255, np.uint8), 500, "right4")


def test_single_flat_finger_is_not_a_slap():
    with pytest.raises(NotASlapError, match=r"image: expected a right4 slap at least .* a single finger"):
        segment_slap(synthetic_ridges(400, 300), 500, "right4")


def test_a_finger_sized_ridge_patch_in_a_big_blank_image_is_one_finger_not_four():
    img = np.full((1000, 1600), 250, np.uint8)
    img[300:750, 500:800] = synthetic_ridges(450, 300)
    seg = segment_slap(img, 500, "right4", quality=False)
    assert len(seg.fingers) == 1 and len(seg.missing) == 3


@pytest.mark.parametrize("bad, match", [
    (np.zeros((1000, 1600), np.int64), "image.dtype"),
    (np.zeros((10, 10, 10, 3), np.uint8), "image"),
    (42, "image: expected a numpy array"),
])
def test_wrong_input_names_the_argument(bad, match):
    with pytest.raises(InvalidInputError, match=match):
        segment_slap(bad, 500, "right4")


def test_wrong_slap_and_dpi_name_the_argument():
    img = np.full((1000, 1600), 255, np.uint8)
    with pytest.raises(InvalidInputError, match="slap: expected 'right4'"):
        segment_slap(img, 500, "right5")
    with pytest.raises(InvalidInputError, match="slap: "):
        segment_slap(img, 500, 2)
    with pytest.raises(InvalidInputError, match="dpi"):
        segment_slap(img, 5, "right4")
    with pytest.raises(InvalidInputError, match="params"):
        segment_slap(img, 500, "right4", params={"x": 1})
    with pytest.raises(InvalidInputError, match="SlapParams.finger_width_mm"):
        SlapParams(finger_width_mm=-1)


def test_cli_segment_writes_images_and_json(nist_slaps, tmp_path):
    import cv2

    from biomatch.cli import main

    src = tmp_path / "slap.png"
    cv2.imwrite(str(src), nist_slaps[14].pixels)
    out = tmp_path / "out"
    assert main(["segment", str(src), "--dpi", "500", "--slap", "left4", "-o", str(out), "--overlay",
                 "--no-quality"]) == 0
    doc = json.loads((out / "segments.json").read_text())
    assert doc["fgp"] == 14 and doc["missing"] == []
    assert [f["position"] for f in doc["fingers"]] == [10, 9, 8, 7]
    for f in doc["fingers"]:
        assert set(f) >= {"position", "box", "rotation_deg", "quality", "file"}
        assert (out / f["file"]).stat().st_mode & 0o777 == 0o600
    assert (out / "overlay.png").exists()
    assert out.stat().st_mode & 0o777 == 0o700
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((1000, 1600), 255, np.uint8))
    assert main(["segment", str(blank), "--dpi", "500", "--slap", "right4", "-o", str(tmp_path / "b")]) == 2
