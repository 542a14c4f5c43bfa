"""Typed errors of the face modality (to be merged into :mod:`biomatch.errors`).

Every class derives from :class:`~biomatch.errors.BiomatchError`, so the command line
maps them to exit code 2 like every other input error.
"""

from __future__ import annotations

from ..errors import BiomatchError, FormatError, ImageError

__all__ = [
    "FaceError",
    "FaceModelError",
    "FaceImageError",
    "NoFaceError",
    "MultipleFacesError",
    "FaceTemplateError",
]


class FaceError(BiomatchError):
    """Base class of the face modality's errors."""


class FaceModelError(FaceError):
    """A vendored face model is missing, altered (SHA-256 mismatch) or cannot be loaded."""


class FaceImageError(FaceError, ImageError):
    """The image cannot hold a face: empty, tiny, uniform (blank or grey), wrong dtype/shape, corrupt."""


class NoFaceError(FaceError):
    """The detector found no face above the confidence threshold (e.g. a fingerprint given as a face)."""


class MultipleFacesError(FaceError):
    """More than one face was found; biomatch reports this rather than guessing which one is meant.

    Attributes
    ----------
    faces : tuple of Detection
        Every detection, best score first.
    """

    def __init__(self, message: str, faces: tuple = ()):
        super().__init__(message)
        self.faces = tuple(faces)


class FaceTemplateError(FaceError, FormatError):
    """A serialised face template is truncated, corrupt or of an unknown version or model."""
