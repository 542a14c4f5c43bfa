"""Face modality: offline detection (YuNet), alignment, quality and embedding (SFace).

The stages, in order (one module each)::

    detect.to_bgr -> detect.detect_faces -> detect.select_face -> align.align_face
        -> quality.measure_quality -> embed.embed_aligned -> template.FaceTemplate -> match.cosine
        -> index.FaceIndex (gallery search by cosine, FAISS)

Both ONNX models are vendored in ``models/`` (licences in ``models/NOTICE``) and verified
by SHA-256 when loaded. :func:`encode_face` is thread-safe: OpenCV networks are kept
per thread.
"""

from __future__ import annotations

from .align import align_face
from .detect import Detection, detect_faces, select_face, to_bgr
from .embed import embed_aligned
from .errors import (FaceError, FaceImageError, FaceModelError, FaceTemplateError, MultipleFacesError,
                     NoFaceError)
from .index import FaceHits, FaceIndex
from .match import cosine
from .nets import MODEL_ID, MODEL_SHA256, RECOGNIZER_FILE
from .params import DEFAULT, FaceParams
from .quality import FaceQuality, measure_quality
from .template import FaceTemplate, decode, encode

__all__ = ["encode_face", "FaceIndex", "FaceHits", "FaceTemplate", "FaceQuality", "FaceParams", "Detection", "cosine",
           "encode", "decode", "detect_faces", "FaceError", "FaceImageError", "FaceModelError",
           "FaceTemplateError", "MultipleFacesError", "NoFaceError"]


def encode_face(image, params: FaceParams = DEFAULT) -> FaceTemplate:
    """Template of the single face in ``image``.

    Parameters
    ----------
    image : ndarray (uint8 grey or BGR) or path
    params : FaceParams

    Raises
    ------
    FaceImageError, NoFaceError, MultipleFacesError, FaceModelError
    """
    bgr = to_bgr(image, params)
    face = select_face(detect_faces(bgr, params), params)
    aligned = align_face(bgr, face.landmarks)
    quality = measure_quality(face, aligned)
    embedding = embed_aligned(aligned)
    return FaceTemplate(embedding, MODEL_ID, MODEL_SHA256[RECOGNIZER_FILE][:16], params.hash(), quality)
