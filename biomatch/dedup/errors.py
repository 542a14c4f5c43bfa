"""Typed errors of the dedup service, re-exported from :mod:`biomatch.errors` (one module owns them)."""

from __future__ import annotations

from ..errors import (  # noqa: F401
    DuplicateSubjectError,
    GalleryClosedError,
    GalleryError,
    GalleryExistsError,
    GalleryKeyError,
    IncompatibleGalleryError,
    IncompatibleTemplateError,
    InvalidInputError,
    NoUsableFingerError,
    NotAGalleryError,
    ShardFullError,
    StorageError,
    UnknownSubjectError,
)

__all__ = ["GalleryError", "NotAGalleryError", "GalleryExistsError", "GalleryKeyError", "IncompatibleGalleryError",
           "DuplicateSubjectError", "UnknownSubjectError", "NoUsableFingerError", "GalleryClosedError",
           "StorageError", "ShardFullError", "IncompatibleTemplateError", "InvalidInputError"]
