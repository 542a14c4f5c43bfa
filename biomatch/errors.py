"""Typed errors of biomatch.

Every error raised on purpose by the library derives from :class:`BiomatchError`.
Messages name the argument, the expected value and the actual value, so that a
caller can fix the input without reading the source.
"""

from __future__ import annotations

__all__ = [
    "BiomatchError",
    "InvalidInputError",
    "ResolutionError",
    "ImageError",
    "TemplateError",
    "IncompatibleTemplateError",
    "FormatError",
    "DatasetError",
    "LeaderModelError",
    "EncodeModelError",
    "IndexFileError",
    "GalleryError",
    "NotAGalleryError",
    "GalleryExistsError",
    "IncompatibleGalleryError",
    "DuplicateSubjectError",
    "UnknownSubjectError",
    "NoUsableFingerError",
    "GalleryClosedError",
    "StorageError",
    "CorruptStoreError",
    "FingerQualityError",
    "StoreRegressedError",
    "ShardFullError",
    "GalleryKeyError",
    "FileAccessError",
    "FaceError",
    "FaceModelError",
    "FaceImageError",
    "NoFaceError",
    "MultipleFacesError",
    "FaceTemplateError",
    "FaceQualityError",
    "NotASlapError",
    "TransactionError",
    "SequenceCheckError",
]


class BiomatchError(Exception):
    """Base class of every error biomatch raises on purpose."""


class InvalidInputError(BiomatchError, ValueError):
    """An argument has the wrong type, dtype, shape or value."""


class ResolutionError(InvalidInputError):
    """The stated resolution contradicts the image: at the stated dpi its ridge period lies outside
    the range of human fingerprints (see :mod:`biomatch.extract.resolution`).

    The message names the argument (``dpi``), the stated value, the ridge period it implies in
    millimetres, and the resolution the image appears to have.

    Attributes
    ----------
    dpi : float or None
        The stated resolution.
    estimated_dpi : float or None
        The resolution the image's ridge period suggests.
    period_mm : float or None
        The image's ridge period in millimetres, at the stated resolution.
    """

    def __init__(self, message: str, dpi: float | None = None, estimated_dpi: float | None = None,
                 period_mm: float | None = None):
        super().__init__(message)
        self.dpi = dpi
        self.estimated_dpi = estimated_dpi
        self.period_mm = period_mm

    def __reduce__(self):  # keep the attributes across processes (pickle calls cls(*args) otherwise)
        return type(self), (str(self), self.dpi, self.estimated_dpi, self.period_mm)


class ImageError(BiomatchError):
    """An image cannot be read, decoded or used (corrupt, empty, absurd size)."""


class NotASlapError(InvalidInputError):
    """An image is not a slap of the stated kind: blank, a single finger, too small to hold the
    slap's fingers at its resolution (:func:`biomatch.extract.slap.segment_slap`)."""


class TransactionError(BiomatchError):
    """A ten-print transaction contradicts itself: a slap record shows fewer fingers than it declares
    (its segments, 14.021, or its positions less the amputated ones, 14.018), a finger both rolled
    and declared amputated.  The message names the record (type, IDC, position code).  Nothing is
    enrolled."""


class SequenceCheckError(TransactionError):
    """A ten-print's rolled fingers do not match the slap segments at their positions: fingers or
    hands swapped (:mod:`biomatch.decide.sequence`).  Nothing is enrolled.

    Attributes
    ----------
    swapped : tuple of int
        The positions whose rolled print matches another position's slap segment better.
    suggested : dict
        Claimed position -> the position its rolled print most likely is.
    """

    def __init__(self, message: str, swapped: tuple = (), suggested: dict | None = None):
        super().__init__(message)
        self.swapped = tuple(swapped)
        self.suggested = dict(suggested or {})

    def __reduce__(self):
        return type(self), (str(self), self.swapped, self.suggested)


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


class EncodeModelError(BiomatchError):
    """The fixed-length code model file is missing, corrupt or of another generation."""


class IndexFileError(BiomatchError):
    """A search-index file is missing, corrupt or of another generation."""


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


class FingerQualityError(GalleryError, ValueError):
    """A finger's print quality is below the gallery's enrolment minimum (capture it again).

    Attributes
    ----------
    position : int
        ISO/IEC 19794-2 finger position (1-10).
    quality : int
        The print's quality (0-100).
    minimum : int
        The gallery's ``DecisionParams.enrol_min_quality``.
    """

    def __init__(self, message: str, position: int = 0, quality: int = 0, minimum: int = 0):
        super().__init__(message)
        self.position, self.quality, self.minimum = position, quality, minimum


class GalleryClosedError(GalleryError):
    """The gallery was closed."""


class StorageError(GalleryError, OSError):
    """The store cannot be written or read (read-only folder, full disk, I/O error, lock)."""


class CorruptStoreError(StorageError):
    """A gallery file that is a source of truth (a shard's store, its high-water mark, the gallery
    manifest) is damaged: a checksum, a structure or a value does not hold.  The message names the
    file.  Derived files (indexes) never raise this: they are rebuilt from the store."""


class StoreRegressedError(CorruptStoreError):
    """A shard's store holds less than it acknowledged: enrolments or removals committed and
    reported durable are missing (an old copy put back, a deleted or damaged WAL).  Searching it
    could answer UNIQUE for a person the registry holds, so the gallery refuses to open until an
    operator restores the right store or accepts the loss (``biomatch gallery check --repair
    --accept-store-loss``)."""


class ShardFullError(StorageError):
    """A shard cannot take another subject: its store would assign a subject key or finger id
    beyond what a shard's memory addresses (subject keys up to 2^31 - 1, finger ids up to
    2^32 - 1).  Nothing was written; enrol into another shard (``Gallery.add_shard``)."""


class GalleryKeyError(GalleryError):
    """An encrypted gallery cannot be opened with the key given: no key, a key of another id (a
    wrong key file or variable), a key file readable by others, or a record sealed under a data
    key the gallery's key set does not hold.  Never raised for damage (that is
    :class:`CorruptStoreError`): a wrong key is told apart by its id before anything is read.

    Attributes
    ----------
    expected_key_id : str or None
        The id of the key the gallery needs (its key-encryption key, or ``dek-N`` for a data key).
    actual_key_id : str or None
        The id of the key that was given, when one was.
    """

    def __init__(self, message: str, expected_key_id: str | None = None, actual_key_id: str | None = None):
        super().__init__(message)
        self.expected_key_id = expected_key_id
        self.actual_key_id = actual_key_id

    def __reduce__(self):  # keep the attributes across processes (Ray actors)
        return type(self), (str(self), self.expected_key_id, self.actual_key_id)


class FileAccessError(BiomatchError, OSError):
    """A file or folder the caller named cannot be read or written: a missing parent folder,
    a file where a folder is expected (or the reverse), no permission, a full disk.  The message
    names the argument, the path and the system's reason.  An ``OSError`` too, so that callers
    catching ``OSError`` around file writes keep working."""


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
        Every detection, the largest face first.
    """

    def __init__(self, message: str, faces: tuple = ()):
        super().__init__(message)
        self.faces = tuple(faces)


class FaceTemplateError(FaceError, FormatError):
    """A serialised face template is truncated, corrupt or of an unknown version or model."""


def invalid(name: str, expected: str, actual: object) -> InvalidInputError:
    """Build the standard message: argument, expected, actual."""
    text = repr(actual)
    if len(text) > 120:
        text = text[:117] + "..."
    return InvalidInputError(f"{name}: expected {expected}, got {text}")


class FaceQualityError(FaceError):
    """A face is found but fails the enrolment quality gate (size, pose, sharpness, detector confidence).

    Attributes
    ----------
    failures : tuple of QualityFailure
        Every failed criterion with its measured and required values.
    quality : FaceQuality or None
        All measured figures.
    """

    def __init__(self, message: str, failures: tuple = (), quality=None):
        super().__init__(message)
        self.failures = tuple(failures)
        self.quality = quality
