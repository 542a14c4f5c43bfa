"""Every tunable of the face encoder, in one frozen parameter object."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

__all__ = ["FaceParams", "DEFAULT"]


@dataclass(frozen=True)
class FaceParams:
    """Parameters of detection, alignment and quality.

    Attributes
    ----------
    score_threshold : float
        Minimum YuNet confidence for a detection to count (0-1).
    nms_threshold : float
        IoU above which YuNet suppresses overlapping boxes.
    min_detect_side_px : int
        Images whose shorter side is below this are upscaled (bicubic) before detection,
        so that small frame-filling faces (ORL: 92x112) reach YuNet's comfortable range.
    max_detect_side_px : int
        Images whose longer side is above this are downscaled before detection (speed);
        landmarks are mapped back and alignment uses the full-resolution image.
    pad_frac : float
        Black border added on every side before detection, as a fraction of the longer side;
        faces that fill the frame are then not cut by the image edge.
    min_image_side_px : int
        Smaller images are refused as tiny.
    min_contrast_grey : float
        Images whose grey-level standard deviation is below this are refused as blank.
    secondary_face_ratio : float
        A second detection counts as another face (and the image is refused as ambiguous)
        when its box area is at least this fraction of the best one's.
    enrol_secondary_face_ratio : float
        The same for enrolment (:func:`~biomatch.face.encode_enrolment_face`): 0 counts every
        other detection at ``score_threshold``, however small (ISO/IEC 19794-5 and ICAO ask for
        one person and no other faces in the portrait). None of the 437 ORL and photo images
        has a second detection, so this costs no false refusal there.
    enrol_min_detector_score : float
        Minimum YuNet confidence at enrolment. A weak quality signal: good frontal portraits
        score 0.75-0.96 in the shared sets (a frame-filling portrait with glasses: 0.753), so
        only marginal detections between ``score_threshold`` and this value are refused.
    enrol_min_eye_distance_px : float
        Minimum distance between the eye centres, in input pixels: 90, the ISO/IEC 19794-5
        Full Frontal minimum (head width >= 180 px), also ICAO's portrait-quality minimum
        (120 recommended). 60 px is the *Token* Frontal geometry, a normalised derived
        image, not a capture requirement. (SFace itself sees the eyes 35 px apart.)
    enrol_max_roll_deg : float
        Maximum in-plane tilt of the eye line, degrees: 8, the ISO/IEC 19794-5 / ICAO roll
        limit. The landmark estimate is precise enough (sd 0.8 deg under rescaling) to apply
        the limit as is.
    enrol_max_yaw_deg : float
        Maximum left-right head turn, degrees (:attr:`FaceQuality.yaw_deg`): 10 = the
        ISO/IEC 19794-5 / ICAO limit of 5 deg plus the estimator's tolerance (5-point
        landmark estimate: sd 1.7 deg median, 3.0 deg p90 under rescaling of the 37 photos;
        nose-depth model about +-20%), so that compliant portraits are not refused for noise.
    enrol_min_blur_var : float
        Minimum variance of the Laplacian of the aligned 112x112 grey crop (grey levels
        squared), i.e. sharpness at the scale the embedding sees. The standard asks for "in
        focus" without a number; measured on the photos: sharp >= 745 (ORL's small images
        >= 71); Gaussian blur of sigma 1 crop px: 39-140 (embedding cosine to the sharp one
        >= 0.89, kept); sigma 1.5: 30 median, max 62 (cosine down to 0.84); sigma 2: <= 38
        (cosine down to 0.71). 50 refuses blur beyond about 1.5 crop px (3.8 px at 90 px
        between the eyes).
    """

    score_threshold: float = 0.7
    nms_threshold: float = 0.3
    min_detect_side_px: int = 224
    max_detect_side_px: int = 1280
    pad_frac: float = 0.15
    min_image_side_px: int = 24
    min_contrast_grey: float = 4.0
    secondary_face_ratio: float = 0.15
    enrol_secondary_face_ratio: float = 0.0
    enrol_min_detector_score: float = 0.75
    enrol_min_eye_distance_px: float = 90.0
    enrol_max_roll_deg: float = 8.0
    enrol_max_yaw_deg: float = 10.0
    enrol_min_blur_var: float = 50.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FaceParams":
        return cls(**json.loads(text))

    def hash(self) -> str:
        """16 hex characters identifying these parameters."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


DEFAULT = FaceParams()
