"""ISO/IEC 19794-2:2005/:2011 and ANSI/INCITS 378-2004 codecs: layout, conventions, errors."""

import struct
import tracemalloc

import numpy as np
import pytest

from biomatch import cli
from biomatch.errors import FormatError, InvalidInputError
from biomatch.formats import FORMATS, dump, encode, load, load_views, sniff
from biomatch.template import FingerView, Template

STANDARD = [f for f in FORMATS if f != "native"]
STEP_DEG = {"iso19794-2:2005": 360 / 256, "iso19794-2:2011": 360 / 256, "ansi378": 2.0}


def _template(n=40, seed=3, w=300, h=400):
    rng = np.random.default_rng(seed)
    return Template.from_arrays(rng.uniform(0, w, n), rng.uniform(0, h, n), rng.uniform(0, 2 * np.pi, n),
                                kind=rng.integers(0, 3, n), quality=rng.integers(0, 101, n),
                                width=w, height=h, print_quality=66)


def _angle_err_deg(a, b):
    return np.degrees(np.abs((a - b + np.pi) % (2 * np.pi) - np.pi))


@pytest.mark.parametrize("fmt", STANDARD)
@pytest.mark.parametrize("dpi", [500, 569, 1000, 333])
def test_round_trip_within_quantisation(fmt, dpi):
    t = _template()
    data = dump(t, fmt, dpi=dpi)
    assert sniff(data) == fmt
    (view,) = load_views(data)
    u = view.template
    assert view.dpi == dpi and len(u) == len(t) and u.quality == 66
    size_err = 0 if 500 % dpi == 0 or dpi % 500 == 0 else 1 + 500 / dpi
    assert abs(u.width - t.width) <= size_err and abs(u.height - t.height) <= size_err
    half_px = 0.5 * 500 / dpi + 1e-3
    assert np.abs(u.minutiae["x"] - t.minutiae["x"]).max() <= half_px
    assert np.abs(u.minutiae["y"] - t.minutiae["y"]).max() <= half_px
    assert _angle_err_deg(u.minutiae["angle"], t.minutiae["angle"]).max() <= STEP_DEG[fmt] / 2 + 1e-3
    np.testing.assert_array_equal(u.minutiae["kind"], t.minutiae["kind"])
    np.testing.assert_array_equal(u.minutiae["quality"], t.minutiae["quality"])
    assert load(dump(u, fmt, dpi=dpi)) == u  # a second pass is exact


@pytest.mark.parametrize("fmt", STANDARD)
def test_several_views(fmt):
    views = [FingerView(_template(seed=s), position=p, view_number=v, impression_type=i)
             for s, (p, v, i) in enumerate([(2, 0, 0), (7, 0, 1), (2, 1, 0)])]
    back = load_views(dump(views, fmt))
    assert [(v.position, v.view_number, v.impression_type) for v in back] == [(2, 0, 0), (7, 0, 1), (2, 1, 0)]
    assert [len(v.template) for v in back] == [40, 40, 40]
    assert load(dump(views, fmt), position=7) == back[1].template
    with pytest.raises(FormatError, match="position 9"):
        load(dump(views, fmt), position=9)


def test_iso2005_layout_read_from_hand_built_bytes():
    # 1000 dpi (394 px/cm) record, one right-index view, two minutiae
    m = struct.pack(">HHBB", (1 << 14) | 1000, 500, 64, 80) + struct.pack(">HHBB", (2 << 14) | 10, 20, 0, 0)
    view = struct.pack(">BBBB", 2, (1 << 4) | 1, 77, 2) + m + struct.pack(">H", 3) + b"xyz"
    rec = struct.pack(">4s4sIHHHHHBB", b"FMR\0", b" 20\0", 24 + len(view), 0, 800, 1000, 394, 394, 1, 0) + view
    (v,) = load_views(rec)
    assert (v.position, v.view_number, v.impression_type, v.dpi, v.extended_data) == (2, 1, 1, 1000.0, b"xyz")
    t = v.template
    assert (t.width, t.height, t.quality) == (400, 500, 77)
    np.testing.assert_allclose(t.minutiae["x"], [500, 5])
    np.testing.assert_allclose(t.minutiae["y"], [250, 10])
    # 64 * 1.40625 = 90 and 0 deg in the record: the standard's direction is biomatch's
    np.testing.assert_allclose(np.degrees(t.minutiae["angle"]), [90, 0], atol=1e-4)
    assert list(t.minutiae["kind"]) == [1, 2] and list(t.minutiae["quality"]) == [80, 0]
    # extended data survives a rewrite in the same format, not in another
    assert load_views(dump(v, "iso19794-2:2005", dpi=1000))[0].extended_data == b"xyz"
    assert load_views(dump(v, "ansi378"))[0].extended_data == b""


def test_ansi378_layout_two_degree_angles_and_long_form():
    t = Template.from_arrays([10.0], [20.0], [np.deg2rad(270)], kind=[2], quality=[50], width=100, height=100)
    data = dump(t, "ansi378")
    assert data[32 - 2 + 4] == 135  # the angle byte of the only minutia: 270 deg / 2
    body = data[10:]
    long_form = b"FMR\0 20\0" + struct.pack(">HI", 0, len(body) + 14) + body
    assert sniff(long_form) == "ansi378" and load(long_form) == load(data)
    bad = bytearray(data)
    bad[34] = 180  # angle codes stop at 179
    with pytest.raises(FormatError, match="angle code 180"):
        load(bytes(bad))


def test_iso2011_optional_blocks_and_five_byte_minutiae():
    minutiae = struct.pack(">HHB", (1 << 14) | 100, 200, 128) + struct.pack(">HHB", (2 << 14) | 3, 4, 1)
    rep = (b"\xff" * 9 + struct.pack(">BHH", 1, 2, 3)
           + struct.pack(">B", 2) + struct.pack(">BHH", 255, 1, 1) + struct.pack(">BHH", 40, 1, 2)
           + struct.pack(">B", 1) + struct.pack(">HB", 7, 1)  # one certification block
           + struct.pack(">BBHHBHHBB", 6, 0, 197, 197, 8, 300, 400, (5 << 4) | 1, 2) + minutiae
           + struct.pack(">H", 2) + b"ab")
    rec = struct.pack(">4s4sIHB", b"FMR\0", b"030\0", 15 + 4 + len(rep), 1, 1) + struct.pack(">I", 4 + len(rep)) + rep
    (v,) = load_views(rec)
    assert (v.position, v.impression_type, v.extended_data, v.template.quality) == (6, 8, b"ab", 0)
    np.testing.assert_allclose(np.degrees(v.template.minutiae["angle"]), [180, 1.40625], atol=1e-4)
    assert list(v.template.minutiae["quality"]) == [0, 0]


@pytest.mark.parametrize("fmt", STANDARD)
def test_every_truncation_and_trailing_byte_is_a_format_error(fmt):
    data = dump([FingerView(_template(5)), FingerView(_template(3, seed=9), position=3)], fmt)
    for n in range(len(data)):
        with pytest.raises(FormatError):
            load_views(data[:n], fmt)
    with pytest.raises(FormatError):
        load_views(data + b"\0", fmt)


@pytest.mark.parametrize("fmt", STANDARD)
def test_huge_length_fields_are_refused_before_allocating(fmt):
    data = bytearray(dump(_template(5), fmt))
    if fmt == "iso19794-2:2011":
        data[15:19] = (2**30).to_bytes(4, "big")  # representation length 1 GB in a ~100-byte record
        data[8:12] = len(data).to_bytes(4, "big")
    else:
        data[27 if fmt.startswith("iso") else 29] = 255  # minutia count 255 with 5 minutiae present
    with pytest.raises(FormatError):
        load_views(bytes(data), fmt)  # warm-up: lazy imports are not the parser's allocations
    tracemalloc.start()
    with pytest.raises(FormatError) as info:
        load_views(bytes(data), fmt)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20_000 and "byte offset" in str(info.value) and info.value.offset is not None


def test_record_names_field_and_offset():
    data = bytearray(dump(_template(5), "iso19794-2:2005"))
    data[20:22] = b"\0\0"  # y resolution 0
    with pytest.raises(FormatError, match=r"y resolution: 0 pixels/cm.*offset 20"):
        load(bytes(data))


def test_sniff_and_errors():
    t = _template(4)
    assert sniff(encode(t)) == "native" and load(encode(t)) == t
    with pytest.raises(FormatError, match="unknown format"):
        sniff(b"GIF89a.....")
    with pytest.raises(FormatError, match="unsupported version"):
        sniff(b"FMR\0 30\0" + b"\0" * 20)
    with pytest.raises(InvalidInputError, match="format"):
        dump(t, "iso19794-4")
    with pytest.raises(InvalidInputError, match="at most 255"):
        dump(_template(300), "ansi378")
    with pytest.raises(InvalidInputError, match="view_number"):
        dump(FingerView(t, view_number=16), "iso19794-2:2005")


def test_cli_convert_chain(tmp_path, capsys):
    src = tmp_path / "a.bmt"
    src.write_bytes(encode(_template()))
    prev = src
    for fmt in ("iso19794-2:2011", "ansi378", "iso19794-2:2005", "native"):
        out = tmp_path / fmt.replace(":", "_")
        assert cli.main(["convert", str(prev), str(out), "--to", fmt]) == 0
        assert sniff(out.read_bytes()) == fmt
        prev = out
    back = load(prev)
    assert len(back) == 40 and np.abs(back.minutiae["x"] - _template().minutiae["x"]).max() <= 0.5 + 1e-3
    views = [FingerView(_template(seed=1), position=1), FingerView(_template(seed=2), position=2)]
    multi = tmp_path / "multi.iso"
    multi.write_bytes(dump(views, "iso19794-2:2011"))
    assert cli.main(["convert", str(multi), str(tmp_path / "n"), "--to", "native"]) == 2
    assert "--position" in capsys.readouterr().err
    assert cli.main(["convert", str(multi), str(tmp_path / "n"), "--to", "native", "--position", "2"]) == 0
    assert load(tmp_path / "n") == load(multi, position=2)
    assert cli.main(["convert", str(tmp_path / "missing"), str(tmp_path / "x"), "--to", "ansi378"]) == 2
