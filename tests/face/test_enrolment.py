"""Enrolment quality gate: criteria, thresholds in FaceParams, typed refusals naming every failure."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _util import need_dataset

from biomatch.errors import BiomatchError
from biomatch.face import (FaceParams, FaceQuality, FaceQualityError, MultipleFacesError, check_enrolment,
                           encode_enrolment_face, encode_face)
from biomatch.face.quality import NOSE_DEPTH_PER_EYE_DISTANCE

GOOD = FaceQuality(detector_score=0.93, face_width_px=220.0, eye_distance_px=120.0, roll_deg=2.0,
                   yaw_ratio=0.02, blur_var=800.0)


def _q(**kw):
    return FaceQuality(**{**GOOD.to_dict(), **kw})


def _yaw_ratio(deg):
    return NOSE_DEPTH_PER_EYE_DISTANCE * math.tan(math.radians(deg))


# -- the criteria, on measured figures ------------------------------------------------------

def test_a_good_face_passes():
    assert check_enrolment(GOOD) == []


@pytest.mark.parametrize("field, value, criterion, required", [
    ("detector_score", 0.72, "detector_score", ">= 0.75"),
    ("eye_distance_px", 60.0, "eye_distance_px", ">= 90"),
    ("roll_deg", -9.0, "roll_deg", "|x| <= 8"),
    ("yaw_ratio", _yaw_ratio(12.0), "yaw_deg", "|x| <= 10"),
    ("yaw_ratio", _yaw_ratio(-12.0), "yaw_deg", "|x| <= 10"),
    ("blur_var", 30.0, "blur_var", ">= 50"),
])
def test_each_criterion_fails_alone(field, value, criterion, required):
    (f,) = check_enrolment(_q(**{field: value}))
    assert f.criterion == criterion and f.required == required
    expected = _q(**{field: value}).yaw_deg if criterion == "yaw_deg" else np.float32(value)
    assert f.measured == pytest.approx(expected, rel=1e-5)
    assert criterion in str(f) and required in str(f)


def test_limits_themselves_pass():
    p = FaceParams()
    q = _q(detector_score=p.enrol_min_detector_score, eye_distance_px=p.enrol_min_eye_distance_px,
           roll_deg=-p.enrol_max_roll_deg, yaw_ratio=_yaw_ratio(p.enrol_max_yaw_deg - 1e-3),
           blur_var=p.enrol_min_blur_var)
    assert check_enrolment(q, p) == []


def test_every_failure_is_listed_in_a_fixed_order():
    bad = _q(detector_score=0.71, eye_distance_px=33.0, roll_deg=20.0, yaw_ratio=0.3, blur_var=5.0)
    assert [f.criterion for f in check_enrolment(bad)] == [
        "detector_score", "eye_distance_px", "roll_deg", "yaw_deg", "blur_var"]


def test_yaw_degrees_follow_the_head_model():
    assert _q(yaw_ratio=_yaw_ratio(10.0)).yaw_deg == pytest.approx(10.0, abs=1e-3)
    assert _q(yaw_ratio=0.0).yaw_deg == 0.0
    assert _q(yaw_ratio=-_yaw_ratio(30.0)).yaw_deg == pytest.approx(-30.0, abs=1e-3)


def test_thresholds_are_parameters_with_json_round_trip_and_hash():
    p = FaceParams(enrol_min_eye_distance_px=60.0, enrol_max_yaw_deg=5.0)
    assert FaceParams.from_json(p.to_json()) == p
    assert p.hash() != FaceParams().hash()
    assert check_enrolment(_q(eye_distance_px=70.0), p) == []
    assert [f.criterion for f in check_enrolment(_q(yaw_ratio=_yaw_ratio(7.0)), p)] == ["yaw_deg"]


# -- real images ----------------------------------------------------------------------------

def test_good_portrait_is_enrolled_with_the_same_template():
    path = need_dataset("faces/photos_a/id01/img1.jpg")
    t = encode_enrolment_face(path)
    u = encode_face(path)
    np.testing.assert_array_equal(t.embedding, u.embedding)
    assert check_enrolment(t.quality) == []


def test_small_orl_face_is_refused_naming_the_eye_distance():
    path = need_dataset("faces/orl/s1/1.pgm")
    encode_face(path)  # fine for verification
    with pytest.raises(FaceQualityError) as info:
        encode_enrolment_face(path)
    err = info.value
    assert isinstance(err, BiomatchError)
    assert [f.criterion for f in err.failures] == ["eye_distance_px"]
    assert "eye_distance_px 3" in str(err) and "required >= 90" in str(err) and "1 criterion failed" in str(err)
    assert err.quality.eye_distance_px < 90


def test_turned_and_tilted_face_lists_all_its_failures():
    path = need_dataset("faces/photos_b/kit_harington/test_johnsnow_test1.jpg")
    with pytest.raises(FaceQualityError) as info:
        encode_face(path, enrolment=True)
    names = [f.criterion for f in info.value.failures]
    assert {"roll_deg", "yaw_deg"} <= set(names)
    for f in info.value.failures:
        assert f.criterion in str(info.value) and f.required in str(info.value)


def _photo():
    import cv2

    return cv2.imread(str(need_dataset("faces/photos_a/id01/img1.jpg")))


def test_blurred_portrait_is_refused_for_blur():
    import cv2

    img = _photo()
    ied = encode_face(img).quality.eye_distance_px
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0 * ied / 35.2)  # sigma 2 px at the 112 px crop's scale
    with pytest.raises(FaceQualityError) as info:
        encode_enrolment_face(blurred)
    assert "blur_var" in [f.criterion for f in info.value.failures]


def test_downscaled_portrait_fails_the_iso_distance_but_passes_a_lower_one():
    import cv2

    img = _photo()
    ied = encode_face(img).quality.eye_distance_px
    small = cv2.resize(img, None, fx=70 / ied, fy=70 / ied, interpolation=cv2.INTER_AREA)
    with pytest.raises(FaceQualityError, match="eye_distance_px"):
        encode_enrolment_face(small)
    t = encode_enrolment_face(small, FaceParams(enrol_min_eye_distance_px=60.0))
    assert 60 <= t.quality.eye_distance_px < 90


def test_rotated_portrait_fails_roll():
    import cv2

    img = _photo()
    roll0 = encode_face(img).quality.roll_deg
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 15, 1.0)  # 15 deg counter-clockwise as displayed
    rotated = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    with pytest.raises(FaceQualityError) as info:
        encode_enrolment_face(rotated)
    (roll,) = [f for f in info.value.failures if f.criterion == "roll_deg"]
    assert roll.measured == pytest.approx(roll0 - 15, abs=1.5)  # roll_deg is clockwise-positive


def test_small_background_face_is_ignored_for_search_but_refused_at_enrolment():
    import cv2

    a = _photo()
    b = cv2.imread(str(need_dataset("faces/photos_a/id02/img13.jpg")))
    s = 0.25 * a.shape[0] / b.shape[0]
    small = cv2.resize(b, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    both = a.copy()
    both[:small.shape[0], :small.shape[1]] = small
    t = encode_face(both)  # the subject is the largest face, the small one is background
    alone = encode_face(a)
    assert t.quality.eye_distance_px == pytest.approx(alone.quality.eye_distance_px, rel=0.05)
    assert cosine_to(t, alone) > 0.8
    with pytest.raises(MultipleFacesError) as info:
        encode_enrolment_face(both)
    faces = info.value.faces
    assert len(faces) == 2 and faces[0].area_px > faces[1].area_px
    assert str(info.value).count("score") == 2 and "box" in str(info.value)


def cosine_to(a, b):
    return float(np.dot(a.embedding, b.embedding))
