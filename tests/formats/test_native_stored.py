"""decode_stored (a gallery store's fast path) gives exactly what decode gives, errors included."""

import struct
import zlib

import numpy as np
import pytest

from biomatch.errors import FormatError
from biomatch.formats.native import _HEADER, decode, decode_stored, encode
from biomatch.template import MINUTIA_DTYPE, NO_PRINT, Template, grid_shape


def _template(n, seed, grid=False, width=300, height=400):
    rng = np.random.default_rng(seed)
    g = None
    if grid:
        g = rng.integers(0, 180, grid_shape(width, height)).astype(np.uint8)
        g[rng.random(g.shape) < 0.3] = NO_PRINT
    return Template.from_arrays(rng.uniform(0, width, n), rng.uniform(0, height, n), rng.uniform(0, 2 * np.pi, n),
                                kind=rng.integers(0, 3, n), quality=rng.integers(0, 101, n), width=width,
                                height=height, print_quality=int(rng.integers(0, 101)), params_hash="abcdef0123456789",
                                orientation_grid=g)


def _same(a: Template, b: Template):
    assert a == b and type(a) is type(b)
    for t in (a, b):
        assert not t.minutiae.flags.writeable and t.minutiae.flags.owndata and t.minutiae.dtype == MINUTIA_DTYPE
        if t.orientation_grid is not None:
            assert not t.orientation_grid.flags.writeable and t.orientation_grid.flags.owndata
    assert (a.width, a.height, a.quality, a.params_hash) == (b.width, b.height, b.quality, b.params_hash)
    assert (a.orientation_grid is None) == (b.orientation_grid is None)


@pytest.mark.parametrize("grid", [False, True])
def test_same_template_as_decode(grid):
    for seed, n in enumerate([0, 1, 5, 36, 120]):
        blob = encode(_template(n, seed, grid))
        _same(decode_stored(blob), decode(blob))
    # version 1 (angles turned on read) and an empty template
    t = _template(12, 9)
    v1 = bytearray(encode(t)[:-4])
    v1[4:6] = struct.pack("<H", 1)
    v1 = bytes(v1) + struct.pack("<I", zlib.crc32(bytes(v1)))
    _same(decode_stored(v1), decode(v1))
    _same(decode_stored(encode(Template.empty(10, 20))), decode(encode(Template.empty(10, 20))))


def _with_crc(body: bytearray) -> bytes:
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def _corrupt(field: str, value) -> bytes:
    """A well-framed blob (valid CRC) whose first minutia has ``field`` = value."""
    t = _template(8, 3)
    body = bytearray(encode(t)[:-4])
    off = _HEADER.size + MINUTIA_DTYPE.fields[field][1]
    body[off:off + MINUTIA_DTYPE[field].itemsize] = np.asarray(value, MINUTIA_DTYPE[field]).tobytes()
    return _with_crc(body)


@pytest.mark.parametrize("field,value", [("x", np.nan), ("y", np.inf), ("angle", -0.1), ("angle", 7.0),
                                         ("angle", np.float32(2 * np.pi + 1e-6)), ("kind", 3), ("quality", 101)])
def test_invalid_values_raise_decode_error(field, value):
    blob = _corrupt(field, value)
    with pytest.raises(FormatError) as slow:
        decode(blob)
    with pytest.raises(FormatError) as fast:
        decode_stored(blob)
    assert str(fast.value) == str(slow.value) and field in str(fast.value)


def test_angle_bound_agrees_with_the_constructor():
    # the last float32 below the bound is accepted by both, the bound itself by neither
    bound = np.float32(2 * np.pi + 1e-6)
    below = np.nextafter(bound, np.float32(0))
    _same(decode_stored(_corrupt("angle", below)), decode(_corrupt("angle", below)))


def test_header_values_and_frame_errors():
    t = _template(4, 5)
    body = bytearray(encode(t)[:-4])
    body[10] = 101  # whole-print quality
    with pytest.raises(FormatError, match="quality") as e:
        decode_stored(_with_crc(body))
    with pytest.raises(FormatError) as e2:
        decode(_with_crc(body))
    assert str(e.value) == str(e2.value)
    blob = bytearray(encode(t))
    blob[_HEADER.size] ^= 1  # a flipped bit: CRC
    with pytest.raises(FormatError, match="CRC32"):
        decode_stored(bytes(blob))
