"""The AN2K writer (biomatch.formats.an2k_write): round trips through the reader, field by field."""

from __future__ import annotations

import numpy as np
import pytest

from biomatch.errors import InvalidInputError
from biomatch.formats._an2k_records import RS, US, parse
from biomatch.formats.an2k import read_enrolment
from biomatch.formats.an2k_write import (AMPUTATED, UNABLE_TO_PRINT, FingerRecord, Segment, write_file,
                                         write_transaction)


def _img(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    return np.clip(128 + 80 * np.sin(xx / 3.0 + yy / 7.0) + rng.normal(0, 5, (h, w)), 0, 255).astype(np.uint8)


def test_type4_and_type14_round_trip():
    rolled = _img(120, 100, 1)
    slap = _img(300, 400, 2)
    recs = [FingerRecord(rolled, 500, 2, 1, 4),
            FingerRecord(slap, 500, 13, 0, 14, segments=(Segment(2, 10, 90, 20, 200), Segment(3, 100, 190, 5, 210)),
                         amputated={5: AMPUTATED, 4: UNABLE_TO_PRINT}),
            FingerRecord(_img(200, 160, 3), 1000, 7, 1, 14)]
    data = write_transaction(recs, tcn="T-1", date="20260102")
    e = read_enrolment(data)
    assert [(f.position, f.record_type, f.impression_type, f.ppi, f.compression) for f in e.finger_images] == \
        [(2, 4, 1, 500.0, "NONE"), (13, 14, 0, 500.0, "NONE"), (7, 14, 1, 1000.0, "NONE")]
    assert np.array_equal(e.fingers[2].pixels, rolled) and np.array_equal(e.fingers[13].pixels, slap)
    assert e.fingers[7].pixels.shape == (200, 160)
    assert e.text[1][9] == "T-1" and e.text[1][5] == "20260102" and e.text[1][2] == "0500"
    t = parse(data)
    assert [(r.type, r.idc) for r in t.records] == [(1, 0), (4, 1), (14, 2), (14, 3)]
    slap_rec = t.records[2]
    assert bytes(slap_rec.fields[18]).split(RS) == [b"4" + US + b"UP", b"5" + US + b"XX"]
    segs = [tuple(int(v) for v in s.split(US)) for s in bytes(slap_rec.fields[21]).split(RS)]
    assert segs == [(2, 10, 90, 20, 200), (3, 100, 190, 5, 210)]
    # Every record's LEN is its real length (the parser checks it; the sum is the whole file).
    assert sum(r.length for r in t.records) == len(data)


def test_plain_thumbs_and_slaps_in_type4_records():
    """NIST's inked-card samples carry slaps (13/14) and plain thumbs (11/12) in Type-4 records."""
    recs = [FingerRecord(_img(300, 400, 5), 500, 13, 0, 4), FingerRecord(_img(150, 120, 6), 500, 11, 0, 4),
            FingerRecord(_img(150, 120, 7), 500, 12, 0, 14)]
    e = read_enrolment(write_transaction(recs, date="20260101"))
    assert [(f.position, f.record_type) for f in e.finger_images] == [(13, 4), (11, 4), (12, 14)]
    with pytest.raises(InvalidInputError, match="position"):
        write_transaction([FingerRecord(_img(20, 20), 500, 16, 0, 4)], date="20260101")


def test_wsq_round_trip():
    img = _img(256, 240, 4)
    e = read_enrolment(write_transaction([FingerRecord(img, 500, 3, 1, 4, "wsq"),
                                          FingerRecord(img, 500, 4, 1, 14, "wsq")], date="20260101"))
    assert (e.fingers[3].compression, e.fingers[4].compression) == ("WSQ", "WSQ20")
    for pos in (3, 4):
        f = e.fingers[pos]
        # lossy at 0.75 bit/pixel: close, not equal
        assert np.abs(f.pixels.astype(int) - img).mean() < 12


def test_lengths_with_many_digits():
    """A LEN whose digit count changes when its own digits are counted (boundary at 10**k)."""
    for w in range(30, 50):
        data = write_transaction([FingerRecord(_img(20, w), 500, 1, 1, 14)], date="20260101")
        assert read_enrolment(data).fingers[1].width == w


def test_written_file_is_private(tmp_path):
    p = write_file(tmp_path / "t.an2k", [FingerRecord(_img(40, 40), 500, 1)], date="20260101")
    assert p.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("kwargs, match", [
    (dict(image=np.zeros((10, 10), np.float32)), "image"),
    (dict(record_type=4, ppi=1000), "ppi"),
    (dict(record_type=9), "record_type"),
    (dict(position=16, record_type=4), "position"),
    (dict(position=-1), "position"),
    (dict(compression="jpeg"), "compression"),
    (dict(segments=(Segment(2, 0, 50, 0, 5),)), "segments"),
    (dict(amputated={3: "ZZ"}), "amputated"),
    (dict(record_type=4, amputated={3: "XX"}), "amputated"),
])
def test_bad_records_refused(kwargs, match):
    base = dict(image=_img(20, 20), ppi=500, position=1, impression=1, record_type=14)
    with pytest.raises(InvalidInputError, match=match):
        write_transaction([FingerRecord(**{**base, **kwargs})])
