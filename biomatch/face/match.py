"""Stage 6: comparison of face templates by cosine similarity."""

from __future__ import annotations

import numpy as np

from ..errors import IncompatibleTemplateError
from .template import FaceTemplate

__all__ = ["cosine", "cosine_matrix"]


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
