"""Typed errors of the dedup service (to be merged into :mod:`biomatch.errors`).

Every error leaves the gallery untouched: checks run before any write, and writes run in
one SQLite transaction that is rolled back on failure.
"""

from __future__ import annotations

from ..errors import BiomatchError, IncompatibleTemplateError, InvalidInputError

__all__ = ["GalleryError", "NotAGalleryError", "GalleryExistsError", "IncompatibleGalleryError",
           "DuplicateSubjectError", "UnknownSubjectError", "NoUsableFingerError", "GalleryClosedError",
           "StorageError", "IncompatibleTemplateError", "InvalidInputError"]


class GalleryError(BiomatchError):
    """Base class of the errors of a gallery."""


class NotAGalleryError(GalleryError):
    """A folder is missing, is not a biomatch gallery, or its manifest is unreadable."""


class GalleryExistsError(GalleryError):
    """``Gallery.create`` was given a folder that already holds files."""


class IncompatibleGalleryError(GalleryError):
    """The gallery was written by another format version or parameter generation."""


class DuplicateSubjectError(GalleryError, KeyError):
    """A subject id is already enrolled."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnknownSubjectError(GalleryError, KeyError):
    """A subject id is not enrolled."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NoUsableFingerError(GalleryError, ValueError):
    """A record or probe has no finger with enough minutiae to be compared."""


class GalleryClosedError(GalleryError):
    """The gallery was closed."""


class StorageError(GalleryError, OSError):
    """The store cannot be written or read (read-only folder, full disk, I/O error, lock)."""
