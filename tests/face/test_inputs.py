"""Bad input given as a face: fingerprints, tiny, grey, corrupt bytes, wrong dtype -> typed outcomes."""

from __future__ import annotations

import numpy as np
import pytest
from _util import need_dataset

from biomatch.errors import BiomatchError, ImageError
from biomatch.face import FaceError, FaceImageError, NoFaceError, encode_face, encode_enrolment_face

SOCOFING = ["100__M_Left_index_finger.png", "100__M_Right_thumb_finger.png", "101__M_Left_little_finger.png",
            "150__M_Right_middle_finger.png", "1__M_Left_ring_finger.png"]


def _jpeg_bytes() -> bytes:
    return need_dataset("faces/photos_a/id01/img1.jpg").read_bytes()


# -- a fingerprint is not a face --------------------------------------------------------------

@pytest.mark.parametrize("relative", ["fvc2002/db1_b/101_1.tif", "fvc2002/db3_b/101_1.tif",
                                      *(f"socofing/real/{n}" for n in SOCOFING)])
def test_fingerprint_image_gives_no_face(relative):
    path = need_dataset(relative)
    for enrolment in (False, True):
        with pytest.raises(NoFaceError) as info:
            encode_face(path, enrolment=enrolment)
        msg = str(info.value)
        assert "found none" in msg and "fingerprint" in msg
        assert not isinstance(info.value, FaceImageError)  # a readable image, just without a face


def test_fingerprint_as_array_and_as_bytes_gives_no_face():
    import cv2

    path = need_dataset("fvc2002/db1_b/101_1.tif")
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    with pytest.raises(NoFaceError):
        encode_face(grey)
    with pytest.raises(NoFaceError):
        encode_face(path.read_bytes())


# -- unusable images ----------------------------------------------------------------------------

@pytest.mark.parametrize("image, match", [
    (np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8), "tiny"),
    (np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8), "tiny"),
    (np.random.default_rng(0).integers(0, 256, (500, 8), dtype=np.uint8), "tiny"),
    (np.zeros((0, 0), np.uint8), "tiny or empty"),
    (np.full((240, 320), 128, np.uint8), "blank or uniform"),
    (np.full((240, 320, 3), (90, 120, 200), np.uint8), "blank or uniform"),
    (np.full((240, 320, 4), 0, np.uint8), "blank or uniform"),
])
def test_tiny_and_uniform_images(image, match):
    with pytest.raises(FaceImageError, match=match):
        encode_face(image)


@pytest.mark.parametrize("image", [
    np.random.default_rng(0).random((240, 320)),                                   # float64 0-1
    np.random.default_rng(0).random((240, 320)).astype(np.float32) * 255,          # float32 0-255
    np.random.default_rng(0).integers(0, 4096, (240, 320)).astype(np.uint16),      # 12-bit in uint16
    np.random.default_rng(0).integers(-100, 100, (240, 320)).astype(np.int16),
    np.random.default_rng(0).integers(0, 2, (240, 320)).astype(bool),
])
def test_wrong_dtype_is_refused_not_guessed(image):
    with pytest.raises(FaceImageError, match=f"dtype uint8.*got {image.dtype}"):
        encode_face(image)


@pytest.mark.parametrize("image, match", [
    (np.zeros((240, 320, 2), np.uint8), "shape"),
    (np.zeros((4, 240, 320, 3), np.uint8), "shape"),
    (np.zeros(240 * 320, np.uint8), "shape"),
    ([[1, 2], [3, 4]], "got list"),
    (None, "got NoneType"),
    (42, "got int"),
])
def test_wrong_shape_or_type(image, match):
    with pytest.raises(FaceImageError, match=match):
        encode_face(image)


@pytest.mark.parametrize("mutate", [
    lambda b: b[:len(b) // 2],                 # truncated JPEG
    lambda b: b[:200],                         # header only
    lambda b: b"\xff\xd8\xff\xe0" + b"x" * 100,  # JPEG magic, garbage after
    lambda b: b"\x89PNG\r\n\x1a\n",           # PNG signature alone
    lambda b: b"",
    lambda b: bytes(1000),
])
def test_corrupt_bytes(mutate):
    with pytest.raises(FaceImageError, match="cannot decode"):
        encode_face(mutate(_jpeg_bytes()))


def test_valid_bytes_equal_the_file():
    path = need_dataset("faces/photos_a/id01/img1.jpg")
    np.testing.assert_array_equal(encode_face(path.read_bytes()).embedding, encode_face(path).embedding)


def test_corrupt_and_missing_files(tmp_path):
    p = tmp_path / "half.jpg"
    p.write_bytes(_jpeg_bytes()[:5000])
    for path in (p, tmp_path / "missing.png"):
        with pytest.raises(FaceImageError) as info:
            encode_enrolment_face(path)
        assert str(path.name) in str(info.value)


def test_error_hierarchy_separates_the_outcomes():
    assert issubclass(FaceImageError, (FaceError, ImageError, BiomatchError))
    assert issubclass(NoFaceError, FaceError) and not issubclass(NoFaceError, FaceImageError)
