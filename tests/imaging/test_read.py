import numpy as np
import pytest

from biomatch.errors import BiomatchError, ImageError, InvalidInputError
from biomatch.imaging import load_fingerprint, read_image, to_grey8, to_working_resolution

from _util import synthetic_ridges


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".pgm", ".jpg"])
def test_formats_read_to_grey8(tmp_path, ext):
    import cv2

    img = synthetic_ridges(64, 80)
    path = tmp_path / f"x{ext}"
    cv2.imwrite(str(path), img)
    out = load_fingerprint(path, 500)
    assert out.dtype == np.uint8 and out.shape == (64, 80)
    if ext != ".jpg":
        np.testing.assert_array_equal(out, img)


def test_16bit_and_colour(tmp_path):
    import cv2

    img = synthetic_ridges(40, 50)
    cv2.imwrite(str(tmp_path / "a.png"), img.astype(np.uint16) * 257)
    np.testing.assert_array_equal(load_fingerprint(tmp_path / "a.png", 500), img)
    colour = np.dstack([img, img, img])
    np.testing.assert_array_equal(to_grey8(colour), img)
    assert to_grey8(np.dstack([colour, np.full_like(img, 255)])).shape == img.shape


def test_resampling_to_500_dpi():
    img = synthetic_ridges(569, 284)
    out = to_working_resolution(img, 569)
    assert out.shape == (500, 250)
    assert to_working_resolution(img, 1000).shape == (284, 142)
    assert to_working_resolution(img, 500) is img


@pytest.mark.parametrize("dpi", [float("nan"), -500, 0, 50, 5000, "500", None, True])
def test_bad_dpi(dpi):
    with pytest.raises(InvalidInputError, match="dpi"):
        load_fingerprint(synthetic_ridges(40, 40), dpi)


def test_bad_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageError):
        read_image(tmp_path / "missing.png")
    import cv2

    ok, buf = cv2.imencode(".tif", synthetic_ridges(100, 100))
    (tmp_path / "trunc.tif").write_bytes(buf.tobytes()[:200])
    with pytest.raises(BiomatchError):
        load_fingerprint(tmp_path / "trunc.tif", 500)
    (tmp_path / "junk.bmp").write_bytes(b"BM" + bytes(50))
    with pytest.raises(ImageError):
        read_image(tmp_path / "junk.bmp")


@pytest.mark.parametrize("arr", [np.zeros((3, 4, 5), np.uint8), np.zeros((4, 4), np.int64),
                                 np.full((4, 4), np.nan), np.full((4, 4), 3.0), [[1, 2]]])
def test_bad_arrays(arr):
    with pytest.raises(InvalidInputError):
        to_grey8(arr)
