import numpy as np
import pytest

from biomatch.errors import FormatError, InvalidInputError
from biomatch.formats import decode, encode, load_native, save
from biomatch.template import MINUTIA_DTYPE, Template


def _template(n=25, seed=1):
    rng = np.random.default_rng(seed)
    return Template.from_arrays(rng.uniform(0, 300, n), rng.uniform(0, 400, n), rng.uniform(0, 2 * np.pi, n),
                                kind=rng.integers(1, 3, n), quality=rng.integers(1, 101, n),
                                width=300, height=400, print_quality=77, params_hash="abcdef0123456789")


def test_round_trip_bytes_and_file(tmp_path):
    t = _template()
    assert decode(encode(t)) == t
    path = tmp_path / "t.bmt"
    save(t, path)
    assert (path.stat().st_mode & 0o777) == 0o600  # templates are personal data
    back = load_native(path)
    assert back == t and back.quality == 77 and back.params_hash == "abcdef0123456789"
    np.testing.assert_array_equal(back.minutiae, t.minutiae)


def test_empty_template_round_trip():
    t = Template.empty(10, 20)
    assert len(decode(encode(t))) == 0 and decode(encode(t)).quality == 0


def test_immutable():
    t = _template()
    with pytest.raises(ValueError):
        t.minutiae["x"][0] = 5


def test_repr_does_not_leak_coordinates():
    t = _template()
    assert str(float(t.minutiae["x"][0]))[:5] not in repr(t)


@pytest.mark.parametrize("mutate", ["truncate", "magic", "crc", "count", "version", "empty"])
def test_corrupt_input_raises_format_error(mutate):
    data = bytearray(encode(_template()))
    if mutate == "truncate":
        data = data[:-5]
    elif mutate == "magic":
        data[0:4] = b"XXXX"
    elif mutate == "crc":
        data[30] ^= 0xFF
    elif mutate == "count":
        data[32:34] = (60000).to_bytes(2, "little")
    elif mutate == "version":
        data[4] = 9
    elif mutate == "empty":
        data = b""
    with pytest.raises(FormatError):
        decode(bytes(data))


def test_fuzzed_bytes_never_crash():
    rng = np.random.default_rng(0)
    good = encode(_template())
    for _ in range(2000):
        data = bytearray(good)
        for _ in range(rng.integers(1, 6)):
            data[rng.integers(len(data))] = rng.integers(256)
        data = bytes(data[: rng.integers(len(data) + 1)])
        try:
            decode(data)
        except FormatError:
            pass


def test_invalid_fields():
    m = np.zeros(2, MINUTIA_DTYPE)
    m["angle"] = [0, 7.0]
    with pytest.raises(InvalidInputError, match="angle"):
        Template(m, 10, 10)
    with pytest.raises(InvalidInputError, match="minutiae"):
        Template(np.zeros((2, 4), np.float32), 10, 10)
    with pytest.raises(InvalidInputError, match="quality"):
        Template(np.zeros(0, MINUTIA_DTYPE), 10, 10, quality=101)
    with pytest.raises(InvalidInputError):
        decode("not bytes")


def test_registry_reads_paths_and_refuses_bad_arguments(tmp_path):
    from biomatch.formats import dump, load, load_views
    from biomatch.template import FingerView

    t = _template()
    path = tmp_path / "t.ist"
    path.write_bytes(dump(t, "iso19794-2:2011"))
    assert len(load(path)) == len(t) and load_views(str(path))[0].dpi == 500.0
    with pytest.raises(FormatError, match="cannot read"):
        load(tmp_path / "missing")
    with pytest.raises(InvalidInputError, match="bytes or a path"):
        load(12)
    with pytest.raises(InvalidInputError, match="format"):
        load(path, format="iso19794-2")
    with pytest.raises(InvalidInputError, match="position"):
        FingerView(t, position=256)
    assert load(dump(FingerView(t, position=3), "native")) == t  # native keeps the template only


def test_version_1_templates_are_read_in_the_iso_direction():
    """Version 1 pointed directions the NIST way: reading turns them by 180 degrees, except
    generated templates (random sense, no convention)."""
    import struct
    import zlib

    from biomatch.formats import decode, encode

    t = Template.from_arrays([10.0, 20.0], [30.0, 40.0], [0.5, 4.0], kind=[1, 2], quality=[50, 60],
                             width=100, height=100, print_quality=50, params_hash="abc")
    for params, turn in (("abc", np.pi), ("synthetic", 0.0)):
        t2 = Template(t.minutiae, t.width, t.height, t.quality, params)
        body = bytearray(encode(t2)[:-4])
        assert struct.unpack_from("<H", body, 4)[0] == 2
        struct.pack_into("<H", body, 4, 1)
        old = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
        got = decode(old)
        np.testing.assert_allclose(got.minutiae["angle"], np.mod(t.minutiae["angle"] + turn, 2 * np.pi), atol=1e-6)
        assert decode(encode(t2)).minutiae["angle"].tolist() == t2.minutiae["angle"].tolist()
