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
    """

    score_threshold: float = 0.7
    nms_threshold: float = 0.3
    min_detect_side_px: int = 224
    max_detect_side_px: int = 1280
    pad_frac: float = 0.15
    min_image_side_px: int = 24
    min_contrast_grey: float = 4.0
    secondary_face_ratio: float = 0.15

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FaceParams":
        return cls(**json.loads(text))

    def hash(self) -> str:
        """16 hex characters identifying these parameters."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


DEFAULT = FaceParams()
