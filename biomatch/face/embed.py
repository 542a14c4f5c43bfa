"""Stage 4: the 128-d SFace embedding of an aligned crop, L2-normalised float32."""

from __future__ import annotations

import numpy as np

from .errors import FaceError
from .nets import run_recognizer

__all__ = ["EMBEDDING_DIM", "embed_aligned"]

EMBEDDING_DIM = 128
_SWAP_RB = True  # OpenCV's face_recognize.cpp: blobFromImage(img, 1, Size(112, 112), Scalar(0,0,0), true, false)


def embed_aligned(aligned_bgr: np.ndarray) -> np.ndarray:
    """Embedding of a 112x112 BGR uint8 aligned crop; float32, shape (128,), unit norm.

    The blob is built exactly as OpenCV's own ``cv2.FaceRecognizerSF.feature`` does
    (scale 1, no mean, 0-255, channels swapped to RGB), which the tests check.
    """
    import cv2

    blob = cv2.dnn.blobFromImage(aligned_bgr, 1.0, (112, 112), (0, 0, 0), swapRB=_SWAP_RB, crop=False)
    v = run_recognizer(blob)
    if v.shape != (EMBEDDING_DIM,) or not np.all(np.isfinite(v)):
        raise FaceError(f"embedding: expected {EMBEDDING_DIM} finite values, got shape {v.shape}")
    n = float(np.linalg.norm(v))
    if n < 1e-12:
        raise FaceError("embedding: the network returned a zero vector")
    return (v / n).astype(np.float32)

