"""Stage 2: alignment of the 5 landmarks to the standard 112x112 template.

A least-squares similarity transform (rotation, uniform scale, translation; Umeyama 1991)
maps the detected landmarks onto the ArcFace/SFace reference points.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TEMPLATE_112", "similarity_transform", "align_face"]

TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
"""Reference (x, y) of the 5 landmarks in the 112x112 crop (same order as :class:`Detection`)."""

CROP_PX = 112


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity mapping ``src`` (n, 2) onto ``dst`` (n, 2)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    cov = d0.T @ s0 / len(src)
    u, sv, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rot = u @ np.diag(d) @ vt
    var = (s0 ** 2).sum() / len(src)
    scale = (sv * d).sum() / var if var > 0 else 1.0
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - scale * rot @ ms
    return m


def align_face(bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112x112 BGR uint8 crop of a face aligned to :data:`TEMPLATE_112`."""
    import cv2

    m = similarity_transform(landmarks, TEMPLATE_112)
    return cv2.warpAffine(bgr, m, (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
