"""Small file helpers shared by the writers (atomic, owner-only)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some filesystems refuse)."""
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_file_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Create ``path`` (mode 0600) atomically: ``write(tmp)`` fills a temporary file, then fsync, rename.

    A kill at any moment leaves either the old file or the new one, never a torn file.
    ``write`` may write the file by name (e.g. a library's own writer, without holding
    the content in memory).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a stale temporary file of a killed writer keeps its mode otherwise
    finally:
        os.close(fd)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)


def write_private_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 via a temporary file, fsync and rename."""
    write_file_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def canonical_checksum(doc: dict) -> str:
    """SHA-256 (hex) of the canonical JSON of ``doc`` without its ``checksum`` field.

    Manifests carry it so that a damaged or hand-edited one is noticed rather than trusted."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
