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


_MADV_HUGEPAGE = 14  # Linux <sys/mman.h>


def advise_huge_pages(view) -> bool:
    """Ask the kernel to back the mapping holding ``view`` with 2 MiB pages (Linux; else nothing).

    Why: the code stage reads every stored code of a position per probe (64 MB per million
    fingers) through a memory-mapped index file.  On 4 KiB pages that read stops at every page
    (TLB misses; the hardware prefetcher does not cross a page), ~8 GB/s here; when the page cache
    holds the file in 2 MiB folios and the mapping is advised, the kernel maps them whole: the ten
    positions of a 1M-person gallery scanned in 51-53 ms instead of 61-63 (``benchmarks/
    dedup_scale.py``; README, issue 16).  ``MADV_HUGEPAGE`` only changes how pages not yet read
    are brought in (as large folios, by read-ahead) and how they are mapped: the data, the file
    and other processes' mappings are untouched, and a kernel without the feature ignores it.

    Parameters
    ----------
    view : numpy.ndarray
        A view into the mapping (its first byte's address locates the mapping).

    Returns
    -------
    bool
        True when the advice was taken for the whole mapping.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    addr = int(view.__array_interface__["data"][0])
    try:
        with open("/proc/self/maps", "rb") as f:  # the mapping (VMA) that holds addr: advise it whole
            for line in f:
                lo, hi = (int(x, 16) for x in line.split(b" ", 1)[0].split(b"-"))
                if lo <= addr < hi:
                    break
            else:
                return False
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), _MADV_HUGEPAGE) == 0
    except (OSError, AttributeError, ValueError):
        return False
