"""1:N deduplication service: a durable gallery of ten-finger enrolments.

Pipeline of one enrolment::

    Enrolment (records, intake) -> two-phase search over the shards (search, scatter; each
    shard through the typed protocol: scan, persons, rerank) -> evidence, fusion and verdict
    (biomatch.decide) -> atomic insert on the subject's shard (store, watermark)

Example
-------
>>> from biomatch.dedup import Enrolment, Gallery                       # doctest: +SKIP
>>> with Gallery.create("registry") as g:                               # doctest: +SKIP
...     report = g.enroll(Enrolment("A-001", fingers={1: "r_thumb.png", 2: "r_index.png"}))
...     report.decision                                                 # "UNIQUE"
"""

from __future__ import annotations

from ..errors import CorruptStoreError, StoreRegressedError
from .encryption import KeyEnv, KeyFile, KeyProvider, LocalKey
from .errors import (DuplicateSubjectError, GalleryClosedError, GalleryError, GalleryExistsError, GalleryKeyError,
                     IncompatibleGalleryError, NoUsableFingerError, NotAGalleryError, StorageError,
                     UnknownSubjectError)
from .gallery import Gallery
from .backup import backup_gallery, restore_gallery
from .maintenance import CheckReport, check_gallery
from .records import FINGER_POSITIONS, Enrolment
from .report import Candidate, DedupReport, Verification
from .protocol import ShardProtocol
from .rekey import rotate_key
from .shard import Shard, ShardSpec

__all__ = ["Gallery", "Enrolment", "DedupReport", "Candidate", "Verification", "Shard", "ShardSpec", "ShardProtocol",
           "FINGER_POSITIONS", "GalleryError", "NotAGalleryError", "GalleryExistsError", "IncompatibleGalleryError",
           "DuplicateSubjectError", "UnknownSubjectError", "NoUsableFingerError", "GalleryClosedError",
           "StorageError", "CorruptStoreError", "StoreRegressedError", "CheckReport", "check_gallery",
           "backup_gallery", "restore_gallery", "GalleryKeyError", "KeyProvider", "KeyFile", "KeyEnv", "LocalKey",
           "rotate_key"]
