"""Issue 13, item 2: decompression bombs are refused from their header, before any pixel is decoded.

Requirement: the peak RSS of any image read is at most 64 MiB + 8 bytes per allowed pixel
(:data:`~biomatch.imaging.MAX_IMAGE_PIXELS` for fingers, :data:`~biomatch.imaging.MAX_FACE_IMAGE_PIXELS`
for faces); a bomb, refused from its header, must cost far less (:data:`REFUSED_MIB`).

Every read runs in a child process (:func:`_bomb_images.measure`): the child imports the modules,
then for each call resets its peak RSS, makes the call, and reports its error and peak RSS growth;
a watchdog kills the child above 1.5 GiB, so a bomb that is decoded fails the test instead of
exhausting the machine. The bombs are generated at test time by streaming writers that never hold the pixels.

Every test here failed before the fix: the 2.6 MB RGB PNG, the short-scan JPEG, the JPEG 2000
codestream and the 30000 x 30000 grey PNG as a face were killed at the 1.5 GiB watchdog (the
issue measured 5.5 and 11.7 GB), the TIFF grew 1.8 GB before its size was refused, the
many-page LZMA TIFF was decoded whole by the tifffile fallback, AN2K records decoded a
12900 x 12900 RGB PNG (500 MB), deep-colour images were decoded at 16 B/px, arrays were
converted before their size was checked, and the WSQ bombs were refused with messages naming
neither the argument nor the limit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import _bomb_images as bombs
import biomatch
from biomatch.errors import FaceImageError, FormatError, ImageError, InvalidInputError
from biomatch.face import encode_face
from biomatch.formats import an2k
from biomatch.imaging import MAX_FACE_IMAGE_PIXELS, MAX_IMAGE_PIXELS, READ_BYTES_PER_PIXEL, read_image

MiB = 2**20
REFUSED_MIB = 24
"""A refusal from the header allocates no pixel buffer: its peak RSS growth stays under this."""
FINGER_BOUND = 64 * MiB + READ_BYTES_PER_PIXEL * MAX_IMAGE_PIXELS

FINGER_SETUP = ("import cv2, PIL.Image, biomatch, biomatch.extract, biomatch.imaging.wsq\n"
                "from biomatch.imaging import read_image, decode_bytes, load_fingerprint")
FACE_SETUP = ("import cv2, PIL.Image, biomatch, biomatch.face, biomatch.dedup.records\n"
              "from biomatch.face import encode_face\nfrom biomatch.face.detect import to_bgr")
AN2K_SETUP = "import cv2, PIL.Image, biomatch.imaging.wsq\nfrom biomatch.formats import an2k"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The bombs, and images just inside the limits, written without holding their pixels."""
    folder = tmp_path_factory.mktemp("bombs")
    pad = 2_700_000  # so that the AN2K payloads pass the old "64 pixels per compressed byte" check
    rgb_166mpx = bombs.png_bytes(12900, 12900, colour_type=2, pad_bytes=pad)  # under Pillow's own 179 Mpx
    made = {
        "rgb.png": bombs.png_bytes(30000, 30000, colour_type=2),  # 2.6 MB, 2.7 GB decoded
        "grey.png": bombs.png_bytes(30000, 30000, colour_type=0),  # 875 KB, 900 MB decoded
        "big.jpg": bombs.jpeg_bytes(30000, 30000),
        "big.tif": bombs.tiff_bytes(30000, 30000),
        "big.j2k": bombs.j2k_bytes(30000, 30000),
        "big.wsq": bombs.wsq_bytes(65535, 65535),
        # page 0 is 1000 x 1000; OpenCV lacks LZMA, and the old tifffile fallback read all 2000 pages
        "pages.tif": bombs.tiff_bytes(1000, 1000, rows_per_strip=1000, pages=2000, lzma=True),
        # 36 Mpx (under the cap) of 16-bit RGB in one strip: OpenCV would hold the strip at 6 B/px
        "strip16.tif": bombs.tiff_bytes(6000, 6000, rows_per_strip=6000, samples=3, bits=16),
        "t14_png.an2k": bombs.an2k_transaction(14, 12900, 12900, b"PNG", rgb_166mpx),
        "t10_png.an2k": bombs.an2k_transaction(10, 12900, 12900, b"PNG", rgb_166mpx),
        "t14_wsq.an2k": bombs.an2k_transaction(14, 65535, 65535, b"WSQ", bombs.wsq_bytes(65535, 65535)),
        "t14_lie.an2k": bombs.an2k_transaction(14, 1000, 1000, b"PNG", bombs.png_bytes(30000, 30000, 0)),
        # just inside the limits
        "cap.png": bombs.png_bytes(8000, 5000, colour_type=0),  # exactly MAX_IMAGE_PIXELS
        "cap_plus_row.png": bombs.png_bytes(8000, 5001, colour_type=0),
        "strips16.tif": bombs.tiff_bytes(6000, 6000, rows_per_strip=64, samples=3, bits=16),
        "face_rgba16.png": bombs.png_bytes(6000, 4000, colour_type=6, bit_depth=16),  # a 24 Mpx photo
        "t14_ok.an2k": bombs.an2k_transaction(14, 2000, 1500, b"PNG", bombs.png_bytes(2000, 1500, 0)),
    }
    assert len(made["rgb.png"]) < 2_700_000 and len(made["grey.png"]) < 900_000  # the sizes
    for name, data in made.items():
        (folder / name).write_bytes(data)
    return folder


def _refused(outcome, error: type, *parts: str) -> None:
    """The read raised ``error`` (or a subclass) naming every one of ``parts``, cheaply."""
    assert outcome.error is not None, f"not refused: returned {outcome.result}"
    assert error.__name__ in outcome.classes, f"{outcome.error}: {outcome.message}"
    for part in parts:
        assert part in outcome.message, f"{part!r} not in {outcome.message!r}"
    assert outcome.growth < REFUSED_MIB * MiB, f"refusal grew RSS by {outcome.growth / MiB:.0f} MiB"
    assert outcome.wsq_worker_starts == 0  # nothing reached the NBIS decoder process either


# --------------------------------------------------------------------------- finger images


def _finger_calls(path: Path) -> list:
    p = repr(str(path))
    return [f"read_image({p})", f"decode_bytes(open({p}, 'rb').read())",
            f"load_fingerprint({p}, 500)", f"biomatch.extract({p}, 500)"]


@pytest.mark.parametrize("name, size", [("rgb.png", "30000x30000"), ("big.jpg", "30000x30000"),
                                        ("big.tif", "30000x30000"), ("big.j2k", "30000x30000"),
                                        ("big.wsq", "65535x65535")])
def test_finger_bomb_is_refused_from_its_header(files, name, size):
    read_image, decode_bytes, load_fingerprint, extract = bombs.measure(FINGER_SETUP, _finger_calls(files / name))
    limit = f"expected at most {MAX_IMAGE_PIXELS} pixels, got {size}"
    _refused(read_image, ImageError, "path: " + limit, name)
    _refused(decode_bytes, ImageError, "image: " + limit)
    _refused(load_fingerprint, ImageError, "path: " + limit, name)
    _refused(extract, ImageError, "path: " + limit, name)


def test_tiff_fallback_reads_only_the_first_page(files):
    """OpenCV cannot decode LZMA; tifffile then reads page 0, not the 2000 pages (2 GB) of the file."""
    outcomes = bombs.measure(FINGER_SETUP, _finger_calls(files / "pages.tif")[:3])
    for o in outcomes:
        assert o.error is None and o.result == "(1000, 1000)", o.message
        assert o.growth <= 64 * MiB + READ_BYTES_PER_PIXEL * 1000 * 1000


def test_bytes_per_pixel_are_bounded_too(files):
    """36 Mpx is under the pixel cap, but 16-bit RGB in one strip would need ~10 B/px to decode."""
    outcomes = bombs.measure(FINGER_SETUP, _finger_calls(files / "strip16.tif"))
    budget = READ_BYTES_PER_PIXEL * MAX_IMAGE_PIXELS
    for o, arg in zip(outcomes, ("path", "image", "path", "path")):
        _refused(o, ImageError, f"{arg}: expected an image that decodes within {budget} bytes", "6000x6000",
                 "3 samples of 16 bits")


def test_an_image_at_the_cap_is_read_and_one_row_more_is_refused(files):
    at_cap, over = bombs.measure(FINGER_SETUP, [f"load_fingerprint({str(files / 'cap.png')!r}, 500)",
                                                f"load_fingerprint({str(files / 'cap_plus_row.png')!r}, 500)"])
    assert at_cap.error is None and at_cap.result == "(5000, 8000)", at_cap.message
    assert at_cap.growth <= FINGER_BOUND
    assert at_cap.growth <= 64 * MiB + 3 * MAX_IMAGE_PIXELS  # decoded once to grey, plus the array copy
    _refused(over, ImageError, f"path: expected at most {MAX_IMAGE_PIXELS} pixels, got 8000x5001")


def test_deep_colour_finger_image_is_decoded_to_grey_within_its_budget(files):
    """6000 x 6000 16-bit RGB in strips: decoded straight to 8-bit grey (2 B/px), not 16-bit BGR (12 B/px)."""
    (o,) = bombs.measure(FINGER_SETUP, [f"load_fingerprint({str(files / 'strips16.tif')!r}, 500)"])
    assert o.error is None and o.result == "(6000, 6000)", o.message
    assert o.growth <= 64 * MiB + READ_BYTES_PER_PIXEL * 6000 * 6000


def test_arrays_are_checked_before_any_conversion():
    """np.zeros maps no memory until written; converting first would write 500 MB before refusing."""
    finger, face = bombs.measure(FINGER_SETUP + "\nfrom biomatch.face import encode_face\nimport numpy as np", [
        "biomatch.extract(np.zeros((6400, 6400, 4), np.uint16), 500)",
        "encode_face(np.zeros((7100, 7100), np.uint8))"])
    _refused(finger, InvalidInputError, f"image: expected at most {MAX_IMAGE_PIXELS} pixels", "6400x6400")
    _refused(face, FaceImageError, f"image: expected at most {MAX_FACE_IMAGE_PIXELS} pixels", "7100x7100")


def test_cli_extract_refuses_the_bomb_in_one_line(files, tmp_path):
    out = tmp_path / "t.iso"
    code, err, peak = bombs.peak_of_command([sys.executable, "-m", "biomatch", "extract", str(files / "rgb.png"),
                                             "--dpi", "500", "-o", str(out)])
    # the same process doing everything but the read: the modules `biomatch extract` loads
    _, _, baseline = bombs.peak_of_command([sys.executable, "-c", "import biomatch.cli, biomatch.extract, "
                                            "biomatch.template, biomatch.formats, biomatch.imaging, cv2, PIL.Image, "
                                            "PIL.PngImagePlugin"])
    assert code == 2 and not out.exists()
    assert err.count("\n") == 1 and f"expected at most {MAX_IMAGE_PIXELS} pixels, got 30000x30000" in err
    assert peak - baseline < REFUSED_MIB * MiB, f"grew {(peak - baseline) / MiB:.0f} MiB over the imports"


# --------------------------------------------------------------------------- faces


def test_face_bombs_are_refused_from_their_header(files):
    grey, jpg = repr(str(files / "grey.png")), repr(str(files / "big.jpg"))
    outcomes = bombs.measure(FACE_SETUP, [
        f"encode_face({grey})", f"encode_face(open({grey}, 'rb').read())", f"to_bgr({grey})",
        f"biomatch.Enrolment('s1', {{1: biomatch.Template.empty(300, 300)}}, face={grey})",
        f"encode_face(open({jpg}, 'rb').read())"])
    for o in outcomes:
        _refused(o, FaceImageError, f"image: expected at most {MAX_FACE_IMAGE_PIXELS} pixels, got 30000x30000")


def test_a_24_mpx_16_bit_rgba_photo_is_read_within_its_budget(files):
    """Decoded straight to 8-bit BGR (6 B/px with the copy), not 16-bit BGRA (16 B/px) then converted."""
    (o,) = bombs.measure(FACE_SETUP, [f"to_bgr({str(files / 'face_rgba16.png')!r})"])
    assert o.error == "FaceImageError" and "blank or uniform" in o.message  # read, then judged: all black
    assert o.growth <= 64 * MiB + READ_BYTES_PER_PIXEL * 6000 * 4000


# --------------------------------------------------------------------------- AN2K records


def test_an2k_image_records_are_refused_before_decoding(files):
    calls = [f"an2k.read_enrolment({str(files / n)!r})"
             for n in ("t14_png.an2k", "t10_png.an2k", "t14_wsq.an2k", "t14_lie.an2k")]
    calls.append(f"an2k.read_enrolment({str(files / 't14_ok.an2k')!r}).fingers[2].pixels")
    t14_png, t10_png, t14_wsq, t14_lie, inside = bombs.measure(AN2K_SETUP, calls)
    _refused(t14_png, FormatError, "Type-14", f"expected at most {MAX_IMAGE_PIXELS} pixels, got 12900x12900")
    _refused(t10_png, FormatError, "Type-10", f"expected at most {MAX_FACE_IMAGE_PIXELS} pixels, got 12900x12900")
    _refused(t14_wsq, FormatError, f"expected at most {MAX_IMAGE_PIXELS} pixels, got 65535x65535")
    # the record says 1000 x 1000, the PNG inside 30000 x 30000: the decoder would trust the PNG
    _refused(t14_lie, FormatError, "the PNG stream declares 30000x30000, the record 1000x1000")
    # control: a record inside the limits is still decoded (this alone passed before the fix too)
    assert inside.error is None and inside.result == "(1500, 2000)", inside.message
    assert inside.growth <= 64 * MiB + READ_BYTES_PER_PIXEL * 2000 * 1500


# --------------------------------------------------------------------------- NUL bytes in paths


@pytest.mark.parametrize("read, error, argument", [
    pytest.param(lambda p: biomatch.extract(p, 500), InvalidInputError, "path", id="extract"),
    pytest.param(read_image, InvalidInputError, "path", id="read_image"),
    pytest.param(encode_face, FaceImageError, "image", id="encode_face"),
    pytest.param(an2k.read_enrolment, InvalidInputError, "source", id="an2k.read_enrolment"),
])
def test_nul_byte_in_a_path_is_a_typed_error_naming_the_argument(read, error, argument):
    with pytest.raises(error) as info:
        read("a\x00b.png")
    message = str(info.value)
    assert message.startswith(f"{argument}: expected a path without NUL bytes") and "\x00" not in message
    assert r"'a\x00b.png'" in message  # the actual value, escaped
