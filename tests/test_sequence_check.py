"""Sequence check (biomatch.decide.sequence): swapped fingers and hands found, correct cards passed."""

from __future__ import annotations

import numpy as np
import pytest

from _util import need_dataset
from biomatch.decide.sequence import SequenceParams, check_sequence, suggest_order
from biomatch.errors import InvalidInputError


@pytest.fixture(scope="module")
def ten():
    """Ten templates of one person: the NIST card's slap fingertips (2-5, 7-10) and plain thumbs (1, 6),
    each twice -- once as cut from the slap, once from the crop turned by 6 degrees and shifted (the
    "rolled" impression: another capture geometry of the same finger)."""
    import cv2

    from biomatch.extract import extract
    from biomatch.extract.slap import segment_slap
    from biomatch.formats.an2k import read_enrolment

    tx = read_enrolment(need_dataset("samples/nist_libbiomeval/type4-slaps.an2k"))
    crops = {}
    for img in tx.finger_images:
        if img.position in (13, 14):
            for f in segment_slap(img.pixels, img.ppi, img.position, quality=False).fingers:
                crops[f.position] = f.image
        elif img.position in (11, 12):
            crops[{11: 1, 12: 6}[img.position]] = img.pixels
    slap, rolled = {}, {}
    for p, im in crops.items():
        slap[p] = extract(im, 500)
        h, w = im.shape
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 6.0, 1.0)
        m[:, 2] += (15, -10)
        rolled[p] = extract(cv2.warpAffine(im, m, (w, h), borderValue=255), 500)
    assert sorted(slap) == list(range(1, 11))
    return rolled, slap


def test_correct_card_passes(ten):
    rolled, slap = ten
    res = check_sequence(rolled, slap)
    assert res.ok and not res.swapped and not res.suggested
    assert len(res.confirmed) >= 9
    assert res.scores.shape == (10, 10)
    assert "passed" in res.describe()


def test_two_fingers_swapped_are_caught_with_the_order(ten):
    rolled, slap = ten
    card = dict(rolled)
    card[2], card[3] = rolled[3], rolled[2]
    res = check_sequence(card, slap)
    assert not res.ok and res.swapped == (2, 3) and res.suggested == {2: 3, 3: 2} and not res.hand_swap
    assert "rolled 2 is finger 3" in res.describe()


def test_three_cycle_and_two_swaps(ten):
    rolled, slap = ten
    card = dict(rolled)
    card[7], card[8], card[9] = rolled[8], rolled[9], rolled[7]
    card[1], card[6] = rolled[6], rolled[1]
    res = check_sequence(card, slap)
    assert res.suggested == {7: 8, 8: 9, 9: 7, 1: 6, 6: 1}


def test_hands_swapped(ten):
    rolled, slap = ten
    card = {p: rolled[p + 5 if p <= 5 else p - 5] for p in range(1, 11)}
    res = check_sequence(card, slap)
    assert res.hand_swap and len(res.swapped) >= 8
    assert "hands swapped" in res.describe()


def test_missing_fingers_neither_confirm_nor_contradict(ten):
    rolled, slap = ten
    card = {p: t for p, t in rolled.items() if p != 5}   # amputated: no rolled print
    seg = {p: t for p, t in slap.items() if p != 9}      # not found in the slap
    res = check_sequence(card, seg)
    assert res.ok and 5 not in res.rolled and 9 not in res.slap and 9 not in res.confirmed


def test_rolled_finger_in_an_amputated_finger_box_is_moved(ten):
    """Rolled 4 holds finger 5 and finger 4's slap is absent: the evidence moves it."""
    rolled, slap = ten
    card = {p: t for p, t in rolled.items() if p != 5}
    card[4] = rolled[5]
    res = check_sequence(card, slap)
    assert res.suggested == {4: 5}


def test_lone_strong_impostor_does_not_move_a_finger():
    """Evidence in decades: finger 2's genuine 6 decades; rolled 3 also reaches 5 decades against slap 2
    (an impostor, or a rolled print of poor quality) but moving it would displace finger 2."""
    ev = np.array([[6.0, 0.3], [5.0, 0.2]])
    assert suggest_order((2, 3), (2, 3), ev) == {2: 2, 3: 3}


def test_weak_evidence_never_moves():
    ev = np.array([[0.5, 3.0], [3.0, 0.4]])  # 3 decades: below the 4 of move_fmr = 1e-4
    assert suggest_order((2, 3), (2, 3), ev) == {2: 2, 3: 3}
    assert suggest_order((2, 3), (2, 3), ev, SequenceParams(move_fmr=1e-2)) == {2: 3, 3: 2}


def test_bad_arguments():
    with pytest.raises(InvalidInputError, match="rolled"):
        check_sequence([1, 2], {})
    with pytest.raises(InvalidInputError, match="rolled key"):
        check_sequence({11: None}, {})
    with pytest.raises(InvalidInputError, match="SequenceParams.move_fmr"):
        SequenceParams(move_fmr=2)


def test_second_half_of_a_swap_completed_on_weaker_evidence():
    """Rolled 5 is finger 4 (10 decades); rolled 4 matches slap 5 at only 3.5 decades (a poor roll):
    once 5 moved to 4, 4 goes to 5 on the weaker match (complete_fmr 1e-2), not left unexplained."""
    ev = np.array([[0.0, 3.5], [10.0, 0.0]])
    assert suggest_order((4, 5), (4, 5), ev) == {5: 4, 4: 5}
    assert suggest_order((4, 5), (4, 5), ev, SequenceParams(complete_fmr=1e-4)) == {5: 4}
