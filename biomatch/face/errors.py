"""Typed errors of the face modality, re-exported from :mod:`biomatch.errors` (one module owns them)."""

from __future__ import annotations

from ..errors import (  # noqa: F401
    FaceError,
    FaceImageError,
    FaceModelError,
    FaceQualityError,
    FaceTemplateError,
    MultipleFacesError,
    NoFaceError,
)

__all__ = ["FaceError", "FaceModelError", "FaceImageError", "NoFaceError", "MultipleFacesError",
           "FaceTemplateError", "FaceQualityError"]
