"""ANSI/NIST-ITL transactions: the NIST libbiomeval samples, and structural errors."""

import numpy as np
import pytest

from biomatch.errors import FormatError
from biomatch.formats import an2k

from _util import need_dataset


def _sample(name):
    return need_dataset(f"samples/nist_libbiomeval/{name}")


def test_type4_slaps():
    pytest.importorskip("_wsq")
    e = an2k.read_enrolment(_sample("type4-slaps.an2k"))
    assert sorted(e.fingers) == [11, 12, 13, 14]  # plain thumbs, right and left four-finger slaps
    f = e.fingers[14]
    assert (f.width, f.height, f.ppi, f.compression, f.record_type) == (1608, 1000, 500.0, "WSQ", 4)
    assert f.pixels.shape == (1000, 1608) and f.pixels.dtype == np.uint8
    assert e.text[1][2] == "0400" and e.templates == {} and e.faces == []


def test_type3_low_resolution_is_half_the_scanning_resolution():
    e = an2k.read_enrolment(_sample("type3.an2k"))
    f = e.fingers[2]
    assert (f.width, f.height, f.ppi, f.compression, f.impression_type) == (402, 376, 250.0, "NONE", 3)
    assert f.pixels.shape == (376, 402)


def test_type9_minutiae_match_our_extraction_of_the_type13_image():
    from biomatch.extract import extract
    from biomatch.match import SCORE_AT_FMR, FingerprintMatcher

    e = an2k.read_enrolment(_sample("type9-13.an2k"))
    img, tpl = e.fingers[19], e.templates[19]
    assert (img.record_type, img.ppi, img.pixels.shape) == (13, 500.0, (357, 191))
    assert len(tpl) == 28 and (tpl.width, tpl.height) == (191, 357)
    ours = extract(img.pixels, img.ppi)
    # NIST's minutiae (y up, 0.01 mm) converted to ours (y down, 500 dpi) score as a mate (0.248)
    assert FingerprintMatcher(tpl).match(ours) > SCORE_AT_FMR[0.0001]


def test_parse_without_decoding_and_record_listing():
    t = an2k.parse(_sample("type9-13.an2k").read_bytes())
    assert [r.type for r in t.records] == [1, 2, 9, 13] and t.nsr_ppi == 500.0
    e = an2k.read_enrolment(_sample("type9-13.an2k"), decode_images=False)
    assert e.fingers[19].pixels is None and len(e.fingers[19].data) == 191 * 357


def test_structural_errors_name_record_and_offset():
    data = _sample("type4-slaps.an2k").read_bytes()
    with pytest.raises(FormatError, match=r"record 4 \(Type-4, binary\): LEN .*offset 132308"):
        an2k.parse(data[:150_000])
    bad = bytearray(data)
    start = 191 + 57  # first Type-4 record: LEN claims 1 GB
    bad[start:start + 4] = (2**30).to_bytes(4, "big")
    with pytest.raises(FormatError, match=r"Type-4.*LEN 1073741824"):
        an2k.parse(bytes(bad))
    with pytest.raises(FormatError, match="1.001"):
        an2k.parse(b"2.001:10\x1c")
    with pytest.raises(FormatError, match="after the last record"):
        an2k.parse(data + b"x")


def test_face_record_round_trip_from_a_hand_built_transaction():
    import cv2

    face = np.full((40, 30, 3), 120, np.uint8)
    png = cv2.imencode(".png", face)[1].tobytes()

    def tagged(t, fields):
        body = b"".join(b"%d.%03d:" % (t, n) + v + b"\x1d" for n, v in fields)[:-1] + b"\x1c"
        for _ in range(3):  # LEN counts its own digits
            head = b"%d.001:%d\x1d" % (t, len(body) + 20)
            length = len(head) + len(body)
            head = b"%d.001:%d\x1d" % (t, length)
            if len(head) + len(body) == length:
                break
        return head + body

    t1 = tagged(1, [(2, b"0500"), (3, b"1\x1f1\x1e10\x1f01"), (11, b"19.69"), (12, b"19.69")])
    t10 = tagged(10, [(2, b"01"), (3, b"FACE"), (6, b"30"), (7, b"40"), (8, b"1"), (9, b"300"), (10, b"300"),
                      (11, b"PNG"), (12, b"SRGB"), (999, png)])
    e = an2k.read_enrolment(t1 + t10)
    (f,) = e.faces
    assert (f.width, f.height, f.ppi, f.compression) == (30, 40, 300.0, "PNG")
    np.testing.assert_array_equal(f.pixels, face)
