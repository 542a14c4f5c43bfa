"""The high-water mark of a shard: what its store has acknowledged, kept apart from the store.

SQLite cannot tell that it went backwards: an old copy of ``store.sqlite`` put back, or a WAL
deleted or damaged after a kill, leaves a database that passes ``PRAGMA integrity_check`` but
lacks enrolments that were committed and reported durable.  Searching it would answer UNIQUE for
people the registry holds.  So every committed write also records, in ``watermark.json`` beside
the store, the store's AUTOINCREMENT sequences (the highest finger id, subject key and removal
number ever assigned; they only grow), and every open checks the store against it.

Order matters: the store is committed first, then the watermark is replaced (atomically, fsync'd),
both under the gallery's write lock.  The watermark is therefore a lower bound of the store:
a kill between the two leaves the store ahead, which is fine; readers read the watermark first,
then the store, so a concurrent writer can never make a sound store look behind.

File: JSON ``{"format", "version", "gallery_id", "shard", "fingers", "subjects", "removals",
"checksum"}``, ``checksum`` the SHA-256 of the canonical JSON of the other fields; mode 0600.
A store created (or first opened for writing) by a version that keeps watermarks says so in its
``meta`` table (``watermark = 1``): from then on a missing watermark is an error, not a legacy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .._io import canonical_checksum, write_private_atomic
from ..errors import CorruptStoreError, StoreRegressedError

__all__ = ["FILE", "KEYS", "read", "write", "check"]

log = logging.getLogger(__name__)

FILE = "watermark.json"
KEYS = ("fingers", "subjects", "removals")
_FORMAT = "biomatch-watermark"
_VERSION = 1


def read(folder: Path, gallery_id: str, shard: int | None) -> dict | None:
    """The acknowledged sequences ``{"fingers", "subjects", "removals"}`` of a shard, None if no file.

    Raises
    ------
    CorruptStoreError
        The file is unreadable, fails its checksum, or belongs to another gallery or shard.
    """
    path = Path(folder) / FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CorruptStoreError(f"watermark {str(path)!r}: cannot read it ({exc.strerror})") from exc
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise CorruptStoreError(f"watermark {str(path)!r}: expected JSON, the file is damaged ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("version") != _VERSION:
        raise CorruptStoreError(f"watermark {str(path)!r}: expected a {_FORMAT} version {_VERSION} document")
    if doc.get("checksum") != canonical_checksum(doc):
        raise CorruptStoreError(f"watermark {str(path)!r}: checksum mismatch, the file is damaged")
    if doc.get("gallery_id") != gallery_id or (shard is not None and doc.get("shard") != shard):
        raise CorruptStoreError(f"watermark {str(path)!r}: expected gallery {gallery_id} shard {shard}, "
                                f"got gallery {doc.get('gallery_id')} shard {doc.get('shard')}")
    out = {}
    for k in KEYS:
        v = doc.get(k)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CorruptStoreError(f"watermark {str(path)!r}: expected {k} an int >= 0, got {v!r}")
        out[k] = v
    return out


def write(folder: Path, gallery_id: str, shard: int | None, seqs: dict) -> None:
    """Replace the watermark atomically (temporary file, fsync, rename, fsync of the folder; 0600)."""
    doc = {"format": _FORMAT, "version": _VERSION, "gallery_id": gallery_id, "shard": shard,
           **{k: int(seqs[k]) for k in KEYS}}
    doc["checksum"] = canonical_checksum(doc)
    write_private_atomic(Path(folder) / FILE, json.dumps(doc, indent=1, sort_keys=True).encode())


def check(store_path: Path, store_seqs: dict, acknowledged: dict) -> None:
    """Refuse a store that holds less than it acknowledged.

    Raises
    ------
    StoreRegressedError
        Naming the store, what it holds and what was acknowledged.
    """
    behind = [f"{k}: the store's last id is {store_seqs[k]}, {acknowledged[k]} were acknowledged"
              for k in KEYS if store_seqs[k] < acknowledged[k]]
    if behind:
        raise StoreRegressedError(
            f"store {str(store_path)!r}: holds less than it acknowledged ({'; '.join(behind)}): committed "
            f"enrolments or removals are missing (an old copy put back, or a lost WAL). Put the right store back, "
            f"restore a backup (biomatch gallery restore), or accept the loss: biomatch gallery check --repair "
            f"--accept-store-loss")
