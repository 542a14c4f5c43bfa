"""Typed errors of biomatch.

Every error raised on purpose by the library derives from :class:`BiomatchError`.
Messages name the argument, the expected value and the actual value, so that a
caller can fix the input without reading the source.
"""

from __future__ import annotations

__all__ = [
    "BiomatchError",
    "InvalidInputError",
    "ImageError",
    "TemplateError",
    "IncompatibleTemplateError",
    "FormatError",
    "DatasetError",
    "LeaderModelError",
]


class BiomatchError(Exception):
    """Base class of every error biomatch raises on purpose."""


class InvalidInputError(BiomatchError, ValueError):
    """An argument has the wrong type, dtype, shape or value."""


class ImageError(BiomatchError):
    """An image cannot be read, decoded or used (corrupt, empty, absurd size)."""


class TemplateError(BiomatchError):
    """A template is malformed or fails validation."""


class IncompatibleTemplateError(TemplateError):
    """Two templates (or a template and a matcher) come from incompatible generations."""


class FormatError(TemplateError):
    """A serialised template or record is truncated or inconsistent.

    Attributes
    ----------
    offset : int or None
        Byte offset in the input where the problem was found, when known.
    """

    def __init__(self, message: str, offset: int | None = None):
        if offset is not None:
            message = f"{message} (at byte offset {offset})"
        super().__init__(message)
        self.offset = offset


class DatasetError(BiomatchError):
    """A dataset folder is missing, empty or laid out unexpectedly."""


class LeaderModelError(BiomatchError):
    """The LEADER model file is missing, unreadable or not the supported one."""


def invalid(name: str, expected: str, actual: object) -> InvalidInputError:
    """Build the standard message: argument, expected, actual."""
    text = repr(actual)
    if len(text) > 120:
        text = text[:117] + "..."
    return InvalidInputError(f"{name}: expected {expected}, got {text}")
