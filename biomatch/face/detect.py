"""Stage 1: input checks and face detection with YuNet (``cv2.FaceDetectorYN``).

Small frame-filling faces (ORL: 92x112 grey) are handled by upscaling the image so
its shorter side reaches ``min_detect_side_px`` and adding a black border of
``pad_frac`` of the longer side; detections are mapped back to the input's pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..imaging import MAX_FACE_IMAGE_PIXELS
from .errors import FaceImageError, MultipleFacesError, NoFaceError
from .nets import detector
from .params import DEFAULT, FaceParams

__all__ = ["Detection", "to_bgr", "detect_faces", "select_face"]


@dataclass(frozen=True)
class Detection:
    """One detected face, in the input image's pixel coordinates.

    Attributes
    ----------
    box : tuple of 4 float
        ``(x, y, width, height)`` in pixels.
    landmarks : ndarray, float32, shape (5, 2)
        ``(x, y)`` of: eye on the image's left, eye on the image's right, nose tip,
        mouth corner on the left, mouth corner on the right.
    score : float
        Detector confidence 0-1.
    """

    box: tuple
    landmarks: np.ndarray
    score: float

    @property
    def area_px(self) -> float:
        return float(self.box[2] * self.box[3])


def to_bgr(image, params: FaceParams = DEFAULT) -> np.ndarray:
    """Check an image and return it as a contiguous BGR uint8 array of shape (H, W, 3).

    Parameters
    ----------
    image : ndarray, path or bytes
        uint8 grey ``(H, W)``, ``(H, W, 1)``, BGR ``(H, W, 3)`` or BGRA ``(H, W, 4)``; an
        image file path; or the bytes of an encoded image file. Files are decoded straight to
        8-bit BGR (16-bit samples keep their high byte; alpha is dropped; EXIF orientation is
        not applied), after their header is checked against
        :data:`~biomatch.imaging.MAX_FACE_IMAGE_PIXELS` (so a decompression bomb is refused
        before any decoding); arrays are checked against the same limit.

    Raises
    ------
    FaceImageError
        Unreadable or corrupt file; a path with a NUL byte; more than
        :data:`~biomatch.imaging.MAX_FACE_IMAGE_PIXELS` pixels; wrong type, dtype or shape;
        smaller than ``min_image_side_px``; uniform (blank or flat grey) image.
    """
    import cv2

    if isinstance(image, (bytes, bytearray, memoryview, str, os.PathLike)):
        image = _read(image)
    if not isinstance(image, np.ndarray):
        raise FaceImageError("image: expected a numpy array, a path or encoded image bytes, "
                             f"got {type(image).__name__}")
    if image.ndim >= 2 and image.shape[0] * image.shape[1] > MAX_FACE_IMAGE_PIXELS:
        raise FaceImageError(f"image: expected at most {MAX_FACE_IMAGE_PIXELS} pixels, "
                             f"got {image.shape[1]}x{image.shape[0]}")
    if image.dtype != np.uint8:
        raise FaceImageError(f"image: expected dtype uint8 (0-255), got {image.dtype} "
                             "(convert explicitly; biomatch does not guess the range)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise FaceImageError(f"image: expected shape (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.size == 0 or min(image.shape[:2]) < params.min_image_side_px:
        raise FaceImageError(f"image: expected both sides >= {params.min_image_side_px} px, "
                             f"got {image.shape[1]}x{image.shape[0]} (tiny or empty image)")
    if image.ndim == 2:
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        bgr = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    else:
        bgr = np.ascontiguousarray(image)
    # cv2.meanStdDev accumulates in place; ndarray.std would allocate 8 bytes per pixel (float64)
    contrast = float(cv2.meanStdDev(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))[1][0, 0])
    if contrast < params.min_contrast_grey:
        raise FaceImageError(f"image: expected some contrast (grey std >= {params.min_contrast_grey}), "
                             f"got {contrast:.2f} (blank or uniform image)")
    return bgr


def _read(source) -> np.ndarray:
    """An image file or encoded bytes, decoded to 8-bit BGR within the face pixel limit."""
    from ..errors import ImageError, InvalidInputError
    from ..imaging import decode_bytes, read_image

    try:
        if isinstance(source, (str, os.PathLike)):
            return read_image(source, mode="bgr8", max_pixels=MAX_FACE_IMAGE_PIXELS, name="image")
        return decode_bytes(source, "image", mode="bgr8", max_pixels=MAX_FACE_IMAGE_PIXELS)
    except (ImageError, InvalidInputError) as exc:  # one error type for every unusable face image
        raise FaceImageError(str(exc)) from exc


def detect_faces(bgr: np.ndarray, params: FaceParams = DEFAULT) -> list[Detection]:
    """All faces YuNet finds in a BGR uint8 image (from :func:`to_bgr`), best score first."""
    import cv2

    h, w = bgr.shape[:2]
    scale = 1.0
    if min(h, w) < params.min_detect_side_px:
        scale = params.min_detect_side_px / min(h, w)
    if max(h, w) * scale > params.max_detect_side_px:
        scale = params.max_detect_side_px / max(h, w)
    work = bgr if scale == 1.0 else cv2.resize(
        bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
        interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    pad = int(round(params.pad_frac * max(work.shape[:2])))
    if pad:
        work = cv2.copyMakeBorder(work, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    det = detector(params.score_threshold, params.nms_threshold)
    det.setInputSize((work.shape[1], work.shape[0]))
    _, raw = det.detect(work)
    if raw is None:
        return []
    out = []
    for row in np.asarray(raw, np.float32).reshape(-1, 15):
        xy = (row[:14].reshape(7, 2) - pad) / scale
        box = (float(xy[0, 0]), float(xy[0, 1]), float(row[2] / scale), float(row[3] / scale))
        out.append(Detection(box=box, landmarks=np.ascontiguousarray(xy[2:7]), score=float(row[14])))
    out.sort(key=lambda d: -d.score)
    return out


def select_face(faces: list[Detection], params: FaceParams = DEFAULT, *, enrolment: bool = False) -> Detection:
    """The one face of an image (the largest detection); never guesses between several.

    Parameters
    ----------
    faces : list of Detection
        From :func:`detect_faces`, best score first.
    enrolment : bool
        Count other faces with ``enrol_secondary_face_ratio`` (default: any other detection)
        instead of ``secondary_face_ratio``.

    Raises
    ------
    NoFaceError
        No detection at or above ``score_threshold``.
    MultipleFacesError
        Another face with at least the secondary ratio of the largest one's box area; the
        message lists every such face (score and box, largest first) and ``.faces`` holds them.
    """
    if not faces:
        raise NoFaceError(f"image: expected one face, found none at detector confidence >= "
                          f"{params.score_threshold} (not a face photo? a fingerprint?)")
    # The subject is the largest face (closest to the camera), not the most confident one: a
    # small background face can score higher than a large frontal one.
    best = max(faces, key=lambda f: f.area_px)
    ratio = params.enrol_secondary_face_ratio if enrolment else params.secondary_face_ratio
    others = [f for f in faces if f is not best and f.area_px >= ratio * best.area_px]
    if others:
        listed = "; ".join(f"#{i + 1} score {f.score:.2f} box x={f.box[0]:.0f} y={f.box[1]:.0f} "
                           f"w={f.box[2]:.0f} h={f.box[3]:.0f} px" for i, f in enumerate([best, *others]))
        raise MultipleFacesError(
            f"image: expected one face, found {1 + len(others)} ({listed}); crop the image to one person",
            faces=(best, *others))
    return best
