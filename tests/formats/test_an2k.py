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


def tagged(t, fields):
    """A tagged record: ``t.001:LEN`` then the fields, GS-separated, FS-terminated."""
    body = b"".join(b"%d.%03d:" % (t, n) + v + b"\x1d" for n, v in fields)[:-1] + b"\x1c"
    for _ in range(3):  # LEN counts its own digits
        head = b"%d.001:%d\x1d" % (t, len(body) + 20)
        length = len(head) + len(body)
        head = b"%d.001:%d\x1d" % (t, length)
        if len(head) + len(body) == length:
            break
    return head + body


def test_face_record_round_trip_from_a_hand_built_transaction():
    import cv2

    face = np.full((40, 30, 3), 120, np.uint8)
    png = cv2.imencode(".png", face)[1].tobytes()

    t1 = tagged(1, [(2, b"0500"), (3, b"1\x1f1\x1e10\x1f01"), (11, b"19.69"), (12, b"19.69")])
    t10 = tagged(10, [(2, b"01"), (3, b"FACE"), (6, b"30"), (7, b"40"), (8, b"1"), (9, b"300"), (10, b"300"),
                      (11, b"PNG"), (12, b"SRGB"), (999, png)])
    e = an2k.read_enrolment(t1 + t10)
    (f,) = e.faces
    assert (f.width, f.height, f.ppi, f.compression) == (30, 40, 300.0, "PNG")
    np.testing.assert_array_equal(f.pixels, face)


# --------------------------------------------------------------------------- Type-9 INCITS 378 block

def _m1_transaction(minutiae, *, nom=None, extra=(), scale=(b"2", b"197", b"197"), legacy=False,
                    hll=b"400", vll=b"500"):
    """Type-1 + one Type-9 record with an INCITS 378 block; ``minutiae`` are (x, y, mav, type, quality)."""
    fmd = b"\x1e".join(b"%d\x1f%d\x1f%d\x1f%d\x1f%d\x1f%d" % (i + 1, *m) for i, m in enumerate(minutiae))
    fields = [(2, b"01"), (3, b"1"), (4, b"U")]
    if legacy:  # a legacy 9.012 minutia too: the INCITS 378 block must win
        fields += [(5, b"0"), (6, b"07"), (12, b"001\x1f01000100090\x1f0\x1fA")]
    fields += [(126, b"27\x1f513\x1f0"), (127, b"0\x1f0"), (128, hll), (129, vll), (130, scale[0]),
               (131, scale[1]), (132, scale[2]), (133, b"1"), (134, b"7"), (135, b"61\x1f255\x1f1"),
               (136, b"%d" % (len(minutiae) if nom is None else nom))]
    if minutiae:
        fields.append((137, fmd))
    fields += list(extra)
    t1 = tagged(1, [(2, b"0500"), (3, b"1\x1f1\x1e9\x1f01"), (11, b"19.69"), (12, b"19.69")])
    return t1 + tagged(9, sorted(fields))


def test_type9_incits378_block_is_read_with_its_resolution_and_direction():
    data = _m1_transaction([(100, 200, 45, 1, 80), (0, 499, 0, 2, 0)], scale=(b"1", b"1000", b"1000"))
    e = an2k.read_enrolment(data)
    (v,) = e.finger_views
    assert (v.position, v.view_number, v.impression_type, v.dpi) == (7, 1, 1, 1000.0)
    t = e.templates[7]
    assert t is v.template and (t.width, t.height, t.quality) == (200, 250, 61)
    np.testing.assert_allclose(t.minutiae["x"], [50, 0])
    np.testing.assert_allclose(t.minutiae["y"], [100, 249.5])
    # INCITS 378 points an ending up its ridge, as biomatch does: 45 x 2 = 90 deg stays 90
    np.testing.assert_allclose(np.degrees(t.minutiae["angle"]), [90, 0], atol=1e-4)
    assert list(t.minutiae["kind"]) == [1, 2] and list(t.minutiae["quality"]) == [80, 0]


def test_type9_incits378_block_agrees_with_the_ansi378_codec():
    from biomatch.formats import dump, load
    from biomatch.template import Template

    rng = np.random.default_rng(5)
    n = 30
    t = Template.from_arrays(rng.uniform(0, 399, n), rng.uniform(0, 499, n), rng.uniform(0, 2 * np.pi, n),
                             kind=rng.integers(0, 3, n), quality=rng.integers(0, 101, n), width=400, height=500)
    record = dump(t, "ansi378")
    raw = np.frombuffer(record[30:30 + 6 * n], [("xt", ">u2"), ("y", ">u2"), ("a", "u1"), ("q", "u1")])
    rows = [(int(r["xt"]) & 0x3FFF, int(r["y"]), int(r["a"]), int(r["xt"]) >> 14, int(r["q"])) for r in raw]
    m1 = an2k.read_enrolment(_m1_transaction(rows)).templates[7]
    ansi = load(record)
    for name in ("x", "y", "angle", "kind", "quality"):
        np.testing.assert_allclose(m1.minutiae[name], ansi.minutiae[name], atol=1e-5)
    assert (m1.width, m1.height) == (ansi.width, ansi.height)


def test_type9_incits378_block_wins_over_legacy_minutiae():
    e = an2k.read_enrolment(_m1_transaction([(10, 20, 0, 1, 50)], legacy=True))
    assert len(e.templates[7]) == 1 and e.templates[7].minutiae["x"][0] == 10


@pytest.mark.parametrize("case, expected", [
    (dict(minutiae=[(1, 2, 0, 1, 0)], nom=2), r"9\.137: 1 minutiae, NOM \(9\.136\) says 2"),
    (dict(minutiae=[(1, 2, 180, 1, 0)]), r"9\.137: minutia 0 angle \(MAV, 2-degree units\): expected an integer in \[0, 179\]"),
    (dict(minutiae=[(1, 2, 0, 3, 0)]), r"MTY.*got b'3'"),
    (dict(minutiae=[(1, 2, 0, 1, 101)]), r"QOM"),
    (dict(minutiae=[(16384, 2, 0, 1, 1)]), r"MXC"),
    (dict(minutiae=[], hll=b""), r"9\.128: HLL .*missing"),
    (dict(minutiae=[], scale=(b"3", b"1", b"1")), r"9\.130: SLC"),
    (dict(minutiae=[], scale=(b"0", b"0", b"0")), r"SLC 0 .*no image record"),
    (dict(minutiae=[], scale=(b"1", b"50", b"500")), r"9\.131: resolution 50 ppi"),
    (dict(minutiae=[], nom=300), r"NOM"),
])
def test_type9_incits378_errors_name_the_field_and_its_offset(case, expected):
    data = _m1_transaction(**case)
    with pytest.raises(FormatError, match=expected) as info:
        an2k.read_enrolment(data)
    number = int(info.value.args[0].split("field 9.")[1][:3])
    tag = b"9.%03d:" % number
    if tag in data:  # the offset is the field's value, not the record's start
        assert info.value.offset == data.index(tag) + len(tag)


def test_type9_incits378_minutia_items_must_be_six():
    data = _m1_transaction([], extra=[(137, b"1\x1f2\x1f3")], nom=1)
    with pytest.raises(FormatError, match="expected 6 items"):
        an2k.read_enrolment(data)


def test_len_terminated_by_fs_is_not_a_crash():
    # found by the mutation fuzzer: "1.001:59<FS>1.002:..." made int() of the LEN text fail
    data = bytearray(_sample("type9-13.an2k").read_bytes())
    data[data.index(b"\x1d")] = 0x1C
    try:
        an2k.read_enrolment(bytes(data), decode_images=False)
    except FormatError:
        pass
