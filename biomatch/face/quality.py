"""Stage 3: quality of one detected face, and the enrolment gate.

:func:`measure_quality` measures; :func:`check_enrolment` compares the measures with the
``enrol_*`` limits of :class:`~biomatch.face.params.FaceParams` (ISO/IEC 19794-5 / ICAO
derived, justified there) and lists every failed criterion with measured and required values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .detect import Detection
from .params import DEFAULT, FaceParams

__all__ = ["FaceQuality", "QualityFailure", "measure_quality", "check_enrolment", "NOSE_DEPTH_PER_EYE_DISTANCE"]

NOSE_DEPTH_PER_EYE_DISTANCE = 0.45
"""Depth of the nose tip in front of the eye centres, in eye distances, of a generic adult head.

Used to turn the landmark yaw ratio into degrees: a head turned by ``a`` shows the nose tip
``depth * sin(a)`` off the eye midpoint while the eyes appear ``cos(a)`` closer, so
``yaw_ratio = depth * tan(a)``. 0.45 comes from the generic 3D face model common in head-pose
estimation (outer eye corners 450 units apart and 135 units behind the nose tip; with the eye
centres 0.65-0.7 of the outer-corner width apart, depth / eye distance = 0.43-0.46). Heads vary
by about +-20%, and so does the angle.
"""


@dataclass(frozen=True)
class FaceQuality:
    """Quality figures of one face (float, rounded to float32 as stored in :class:`FaceTemplate`).

    Attributes
    ----------
    detector_score : float
        YuNet confidence 0-1.
    face_width_px : float
        Width of the detected box, in input pixels.
    eye_distance_px : float
        Distance between the eye centres, in input pixels (the ISO 19794-5 size measure).
    roll_deg : float
        Angle of the eye line from horizontal, degrees (positive: clockwise as displayed).
    yaw_ratio : float
        Horizontal offset of the nose tip from the eye midpoint, in eye distances, measured
        along the eye line; ~0 frontal, ~±0.5 strongly turned (sign: towards the image's right).
    blur_var : float
        Variance of the Laplacian of the aligned 112x112 grey crop; low means blurred.
    """

    detector_score: float
    face_width_px: float
    eye_distance_px: float
    roll_deg: float
    yaw_ratio: float
    blur_var: float

    def __post_init__(self):
        # stored as float32 in templates: round here so that a decoded template compares equal
        for name, value in self.__dict__.items():
            object.__setattr__(self, name, float(np.float32(value)))

    @property
    def yaw_deg(self) -> float:
        """Left-right head turn in degrees, from :attr:`yaw_ratio` (see :data:`NOSE_DEPTH_PER_EYE_DISTANCE`)."""
        return math.degrees(math.atan(self.yaw_ratio / NOSE_DEPTH_PER_EYE_DISTANCE))

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class QualityFailure:
    """One enrolment criterion that a face fails.

    Attributes
    ----------
    criterion : str
        ``"detector_score"``, ``"eye_distance_px"``, ``"roll_deg"``, ``"yaw_deg"`` or ``"blur_var"``.
    measured : float
        The measured value (signed for angles).
    required : str
        The requirement, e.g. ``">= 90"`` or ``"|x| <= 8"``.
    """

    criterion: str
    measured: float
    required: str

    def __str__(self) -> str:
        return f"{self.criterion} {self.measured:.3g} (required {self.required})"


def check_enrolment(quality: FaceQuality, params: FaceParams = DEFAULT) -> list[QualityFailure]:
    """Every enrolment criterion ``quality`` fails, in a fixed order; empty when it passes.

    Criteria (limits from ``params``): detector score, eye distance (ISO/IEC 19794-5 Full
    Frontal), roll and yaw (ISO/ICAO pose), sharpness of the aligned crop.
    """
    q, p = quality, params
    checks = [
        ("detector_score", q.detector_score, q.detector_score >= p.enrol_min_detector_score,
         f">= {p.enrol_min_detector_score:g}"),
        ("eye_distance_px", q.eye_distance_px, q.eye_distance_px >= p.enrol_min_eye_distance_px,
         f">= {p.enrol_min_eye_distance_px:g}"),
        ("roll_deg", q.roll_deg, abs(q.roll_deg) <= p.enrol_max_roll_deg, f"|x| <= {p.enrol_max_roll_deg:g}"),
        ("yaw_deg", q.yaw_deg, abs(q.yaw_deg) <= p.enrol_max_yaw_deg, f"|x| <= {p.enrol_max_yaw_deg:g}"),
        ("blur_var", q.blur_var, q.blur_var >= p.enrol_min_blur_var, f">= {p.enrol_min_blur_var:g}"),
    ]
    return [QualityFailure(name, float(value), req) for name, value, ok, req in checks if not ok]


def measure_quality(face: Detection, aligned_bgr: np.ndarray) -> FaceQuality:
    """Quality of ``face`` given its aligned crop (from :func:`~biomatch.face.align.align_face`)."""
    import cv2

    lm = np.asarray(face.landmarks, np.float64)
    eye_l, eye_r, nose = lm[0], lm[1], lm[2]
    axis = eye_r - eye_l
    dist = float(np.hypot(*axis))
    roll = math.degrees(math.atan2(axis[1], axis[0]))
    yaw = float(np.dot(nose - (eye_l + eye_r) / 2, axis / dist) / dist) if dist > 0 else 0.0
    grey = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    blur = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return FaceQuality(detector_score=float(face.score), face_width_px=float(face.box[2]),
                       eye_distance_px=dist, roll_deg=roll, yaw_ratio=yaw, blur_var=blur)
