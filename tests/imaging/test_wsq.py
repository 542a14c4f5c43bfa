"""WSQ images (NBIS through the isolated worker) and JPEG 2000 through the image reader."""

import numpy as np
import pytest

from biomatch import cli
from biomatch.errors import FormatError, ImageError
from biomatch.imaging import read_image

from _util import need_dataset, synthetic_ridges

pytest.importorskip("_wsq", reason="the 'wsq' package (NBIS WSQ codec) is not installed")
from biomatch.imaging import wsq  # noqa: E402


@pytest.fixture(scope="module")
def sample():
    return need_dataset("samples/nist_libbiomeval/img.wsq").read_bytes()


def test_decode_is_nbis_pixel_for_pixel(sample):
    import io

    import wsq as wsq_plugin  # noqa: F401  (registers the Pillow plugin: NBIS in-process)
    from PIL import Image

    pixels, ppi = wsq.decode(sample)
    reference = np.asarray(Image.open(io.BytesIO(sample)))
    assert pixels.shape == (256, 256) and ppi == 500.0
    np.testing.assert_array_equal(pixels, reference)
    info = wsq.parse_header(sample)
    assert (info.width, info.height, info.n_blocks) == (256, 256, 3)


def test_encode_then_decode():
    img = synthetic_ridges(200, 160)
    data = wsq.encode(img)
    back, _ = wsq.decode(data)
    assert back.shape == img.shape and np.abs(back.astype(int) - img).mean() < 8  # lossy, ~0.75 bpp
    assert len(data) < img.size / 4


def test_read_image_and_extract_accept_wsq(tmp_path, sample, capsys):
    path = tmp_path / "finger.wsq"
    path.write_bytes(wsq.encode(synthetic_ridges(300, 280)))
    assert read_image(path).shape == (300, 280)
    renamed = tmp_path / "no_suffix"
    renamed.write_bytes(sample)
    assert read_image(renamed).shape == (256, 256)  # recognised by its FFA0 marker
    assert cli.main(["extract", str(path), "--dpi", "500", "-o", str(tmp_path / "t.iso"),
                     "--format", "iso19794-2:2011"]) == 0
    assert (tmp_path / "t.iso").read_bytes()[:8] == b"FMR\x00030\x00"


def test_jpeg2000_through_the_reader():
    img = read_image(need_dataset("samples/nist_libbiomeval/img.jp2"))
    assert img.shape == (1007, 908) and img.dtype == np.uint8


@pytest.mark.parametrize("cut", [2, 10, 100, 1000, 8000])
def test_truncated_or_corrupt_wsq_is_a_format_error(sample, cut, tmp_path):
    with pytest.raises(FormatError):
        wsq.decode(sample[:cut])
    path = tmp_path / "bad.wsq"
    path.write_bytes(sample[:cut])
    with pytest.raises(ImageError):
        read_image(path)


def test_header_refuses_absurd_sizes_before_decoding(sample):
    data = bytearray(sample)
    i = data.find(b"\xff\xa2")
    data[i + 6:i + 10] = b"\xff\xff\xff\xff"  # 65535 x 65535 in an 8 KB file
    with pytest.raises(FormatError, match="pixels, more than"):
        wsq.parse_header(bytes(data))


def test_a_decoder_crash_is_contained(sample):
    # mutations that made NBIS abort ("double free", "malloc_consolidate") in-process
    import random

    rng = random.Random(4)
    seen = 0
    for _ in range(300):
        m = bytearray(sample)
        for _ in range(rng.randint(1, 8)):
            p = rng.randrange(len(m))
            m[p] = rng.randrange(256)
        try:
            wsq.decode(bytes(m))
            seen += 1
        except FormatError:
            seen += 1
    assert seen == 300
    assert wsq.decode(sample)[0].shape == (256, 256)  # the worker still (or again) serves
