"""Behaviour of the whole extraction pipeline."""

import dataclasses

import numpy as np
import pytest

from biomatch.errors import BiomatchError, InvalidInputError
from biomatch.extract import extract
from biomatch.template import Template

from _util import need_dataset, synthetic_ridges

KEYS = ["grey", "mask", "normalised", "orientation", "coherence", "period", "enhanced",
        "binary", "skeleton", "candidates", "minutiae"]


@pytest.fixture(scope="module")
def fvc_image():
    import cv2

    path = need_dataset("fvc2002/db1_b/101_1.tif")
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def test_real_print_gives_plausible_template(fvc_image):
    cap = {}
    t = extract(fvc_image, 500, capture=cap)
    assert isinstance(t, Template)
    assert 15 <= len(t) <= 80 and t.quality > 40
    assert (t.width, t.height) == (388, 374)
    assert set(KEYS) <= set(cap)
    m = t.minutiae
    assert np.all(cap["mask"][m["y"].astype(int), m["x"].astype(int)] == 1)
    assert set(np.unique(m["kind"])) <= {1, 2}


def test_deterministic(fvc_image):
    a, b = extract(fvc_image, 500), extract(fvc_image.copy(), 500)
    assert a == b


def test_capture_off_by_default_and_path_input(fvc_image):
    path = need_dataset("fvc2002/db1_b/101_1.tif")
    assert extract(path, 500) == extract(fvc_image, 500)


def test_resolution_is_normalised(fvc_image):
    """A 1000 ppi copy gives minutiae at the same 500 dpi positions."""
    import cv2

    big = cv2.resize(fvc_image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    a, b = extract(fvc_image, 500), extract(big, 1000)
    assert abs(a.width - b.width) <= 1 and abs(a.height - b.height) <= 1
    pa = np.stack([a.minutiae["x"], a.minutiae["y"]], 1)
    pb = np.stack([b.minutiae["x"], b.minutiae["y"]], 1)
    d = np.hypot(*(pa[:, None, :] - pb[None, :, :]).transpose(2, 0, 1)).min(axis=1)
    assert np.mean(d < 6) > 0.7


@pytest.mark.parametrize("image", [np.full((300, 300), 128, np.uint8), np.zeros((300, 300), np.uint8),
                                   np.full((300, 300), 255, np.uint8)])
def test_blank_images_give_empty_template(image):
    t = extract(image, 500)
    assert len(t) == 0 and t.quality == 0


def test_parallel_stripes_have_no_minutiae():
    t = extract(synthetic_ridges(300, 300, period=9.0, angle_deg=20), 500)
    assert len(t) <= 3


@pytest.mark.parametrize("image, match", [
    (np.zeros((1, 1), np.uint8), "image"),
    (np.zeros((300, 300), np.int64), "dtype"),
    (np.zeros((300, 300, 2), np.uint8), "shape"),
    ("not/a/file.png", "path"),
])
def test_bad_input(image, match):
    with pytest.raises(BiomatchError, match=match):
        extract(image, 500)


def test_huge_image_refused_quickly():
    import time

    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match="image"):
        extract(np.zeros((10000, 10000), np.uint8), 500)
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("dpi", [float("nan"), -1, 0])
def test_bad_dpi(dpi):
    with pytest.raises(InvalidInputError, match="dpi"):
        extract(synthetic_ridges(100, 100), dpi)


def test_bad_params():
    with pytest.raises(InvalidInputError, match="params"):
        extract(synthetic_ridges(100, 100), 500, params={"block_size_px": 3})


def test_face_photo_is_not_a_fingerprint():
    folder = need_dataset("faces/photos_a")
    for path in sorted(folder.glob("*/*.jpg"))[:4]:
        t = extract(path, 500)
        assert len(t) == 0 and t.quality == 0, path.name


def test_wrong_resolution_is_flagged():
    """A 1000 ppi card crop declared as 500 dpi has ridges twice too wide: refused, naming the
    resolution it appears to have (it gave an empty template, silently, before the check)."""
    from biomatch.errors import ResolutionError

    folder = need_dataset("samples/nist_tenprint_1000ppi")
    path = sorted(folder.glob("*.bmp"))[0]
    with pytest.raises(ResolutionError, match="appears to be about"):
        extract(path, 500)
    assert extract(path, 1000).quality > 0


def test_biomatch_extract_is_callable_after_submodule_imports(fvc_image):
    """The README's ``biomatch.extract(path, dpi)`` works whatever was imported before."""
    import biomatch
    import biomatch.extract.minutiae  # noqa: F401  binds biomatch.extract to the subpackage
    import biomatch.match  # noqa: F401

    t = biomatch.extract(fvc_image, 500)
    assert isinstance(t, Template) and t == extract(fvc_image, 500)


def test_refine_mask_counts_only_existing_blocks_at_the_image_edge():
    from biomatch.extract.segmentation import refine_mask
    from biomatch.params import ExtractionParams

    p = ExtractionParams()
    # 5 x 6 blocks of 16 px plus a 4 px remainder; periods found everywhere except in the
    # last column, where the x-signature window leaves the image.
    block_period = np.full((5, 6), 9.0, np.float32)
    block_period[:, -1] = 0.0
    mask = np.ones((5 * 16, 6 * 16 + 4), np.uint8)
    out = refine_mask(mask, block_period, p)
    # An edge block has 6 neighbours, 3 of them periodic: a fraction of 1/2, not 3/9.
    assert out.all()
    # The pixels beyond the last whole block follow that block, both ways.
    block_period[:, -2:] = 0.0
    out = refine_mask(mask, block_period, p)
    assert not out[:, 5 * 16:].any() and out[:, : 4 * 16].all()


def _valley_y(h=30, w=40, fork=(20, 15)):
    """A valley skeleton shaped like a Y lying on its side: two arms join at ``fork``."""
    v = np.zeros((h, w), np.uint8)
    fx, fy = fork
    for k in range(1, 8):
        v[fy - k, fx - k] = 1  # upper arm, coming from the left
        v[fy + k, fx - k] = 1  # lower arm
    v[fy, fx:fx + 15] = 1  # the stem, to the right
    return v


def test_ending_moves_to_the_valley_fork_ahead_of_it():
    from biomatch.extract.minutiae import valley_fork_locations
    from biomatch.params import ExtractionParams

    v = _valley_y()
    mask = np.ones_like(v)
    p = ExtractionParams()
    # Ending at (15, 15) pointing right (towards the fork), one pointing away, a bifurcation.
    x, y = valley_fork_locations(np.array([15, 15, 15]), np.array([15, 15, 15]),
                                 np.array([0.0, np.pi, 0.0]), np.array([1, 1, 2]), v, mask, p)
    assert (x[0], y[0]) == (20, 15)
    assert (x[1], y[1]) == (15, 15)  # the fork is behind it
    assert (x[2], y[2]) == (15, 15)  # bifurcations keep their ridge fork
    far = dataclasses.replace(p, ending_valley_fork_max_px=3.0)
    x, y = valley_fork_locations(np.array([15]), np.array([15]), np.array([0.0]), np.array([1]), v, mask, far)
    assert (x[0], y[0]) == (15, 15)  # too far away
