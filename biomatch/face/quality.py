"""Stage 3: enrolment quality of one detected face."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .detect import Detection

__all__ = ["FaceQuality", "measure_quality"]


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

    def to_dict(self) -> dict:
        return dict(self.__dict__)


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
