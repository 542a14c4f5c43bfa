"""Stage 6: comparison of face templates by cosine similarity."""

from __future__ import annotations

import numpy as np

from ..errors import IncompatibleTemplateError
from .template import FaceTemplate

__all__ = ["cosine", "cosine_matrix", "COSINE_AT_FMR"]

COSINE_AT_FMR = {
    # Measured on ../shared/datasets/faces/orl (40 people x 10 images, all 78,000 non-mated
    # pairs; SFace int8bq, this package's detection and alignment): the cosine that a fraction
    # FMR of non-mated pairs reaches.  FNMR there (1,800 mated pairs): 0, 0, 0, 0.28%.  ORL is
    # one lab's 40 volunteers: 1e-4 rests on the tail of 78k pairs.  OpenCV Zoo's published
    # SFace threshold (0.363, LFW) sits between the 1e-2 and 1e-3 points, as here.
    0.1: 0.2063,
    0.01: 0.3029,
    0.001: 0.3767,
    0.0001: 0.4397,
}
"""Face decision thresholds: FMR (fraction) -> minimum cosine (used by 1:N fusion)."""


def cosine(a: FaceTemplate, b: FaceTemplate) -> float:
    """Cosine similarity in [-1, 1] of two templates of the same model (higher: more alike).

    Raises
    ------
    IncompatibleTemplateError
        The templates come from different embedding models.
    """
    if (a.model_id, a.model_hash) != (b.model_id, b.model_hash):
        raise IncompatibleTemplateError(f"templates: expected the same model, got "
                                        f"{a.model_id}/{a.model_hash} and {b.model_id}/{b.model_hash}")
    return float(np.clip(np.dot(a.embedding, b.embedding), -1.0, 1.0))


def cosine_matrix(embeddings: np.ndarray) -> np.ndarray:
    """All-pairs cosine similarity of unit-norm rows, float32 (n, n)."""
    e = np.ascontiguousarray(embeddings, dtype=np.float32)
    return np.clip(e @ e.T, -1.0, 1.0)
