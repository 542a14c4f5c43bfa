"""Face modality: offline detection (YuNet), alignment, quality and embedding (SFace).

The stages, in order (one module each)::

    detect.to_bgr -> detect.detect_faces -> detect.select_face -> align.align_face
        -> quality.measure_quality [-> quality.check_enrolment] -> embed.embed_aligned
        -> template.FaceTemplate -> match.cosine

The gallery's face index is :class:`biomatch.retrieval.FaceIndex`.

Both ONNX models are vendored in ``models/`` (licences in ``models/NOTICE``) and verified
by SHA-256 when loaded. :func:`encode_face` is thread-safe: OpenCV networks are kept
per thread.
"""

from __future__ import annotations

from .align import align_face
from .detect import Detection, detect_faces, select_face, to_bgr
from .embed import embed_aligned
from .errors import (FaceError, FaceImageError, FaceModelError, FaceQualityError, FaceTemplateError,
                     MultipleFacesError, NoFaceError)
from .match import cosine
from .nets import MODEL_ID, MODEL_SHA256, RECOGNIZER_FILE
from .params import DEFAULT, FaceParams
from .quality import FaceQuality, QualityFailure, check_enrolment, measure_quality
from .template import FaceTemplate, decode, encode

__all__ = ["encode_face", "encode_enrolment_face", "check_enrolment", "FaceTemplate",
           "FaceQuality", "QualityFailure", "FaceParams", "Detection", "cosine", "encode", "decode",
           "detect_faces", "FaceError", "FaceImageError", "FaceModelError", "FaceQualityError",
           "FaceTemplateError", "MultipleFacesError", "NoFaceError"]


def encode_face(image, params: FaceParams = DEFAULT, *, enrolment: bool = False) -> FaceTemplate:
    """Template of the single face in ``image``.

    Parameters
    ----------
    image : ndarray (uint8 grey or BGR), path, or bytes of an encoded image file
    params : FaceParams
    enrolment : bool
        Apply the enrolment gate: any other face counts (``enrol_secondary_face_ratio``) and
        the face must pass :func:`check_enrolment` (checked before the embedding is computed).

    Raises
    ------
    FaceImageError, NoFaceError, MultipleFacesError, FaceModelError
    FaceQualityError
        ``enrolment=True`` and the face fails criteria; the message names each one with its
        measured and required values, ``.failures`` holds them.
    """
    bgr = to_bgr(image, params)
    face = select_face(detect_faces(bgr, params), params, enrolment=enrolment)
    aligned = align_face(bgr, face.landmarks)
    quality = measure_quality(face, aligned)
    if enrolment:
        failures = check_enrolment(quality, params)
        if failures:
            n = len(failures)
            raise FaceQualityError(f"face: refused for enrolment, {n} {'criterion' if n == 1 else 'criteria'} "
                                   "failed: " + "; ".join(map(str, failures)), failures=failures, quality=quality)
    embedding = embed_aligned(aligned)
    return FaceTemplate(embedding, MODEL_ID, MODEL_SHA256[RECOGNIZER_FILE][:16], params.hash(), quality)


def encode_enrolment_face(image, params: FaceParams = DEFAULT) -> FaceTemplate:
    """:func:`encode_face` with the enrolment gate (``enrolment=True``)."""
    return encode_face(image, params, enrolment=True)
