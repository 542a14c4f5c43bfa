"""The files of a shard's finger-code index: versioned folders under one checked manifest.

Layout (folder ``index/`` of a shard; derived data that may lag the store)::

    manifest.json        code generation, n_bits, factory, marks (indexed_upto, removals_upto),
                         the current version folder, its row counts and every file's size and SHA-256
    v<hex>/pos01.faiss   FingerIndex of position 1 (+ .removed tombstones) ... pos10
    v<hex>/rows01.npz    the subject key (int32) of each of position 1's rows (format version 2;
                         version 1 also held each row's finger id, int64: read, converted)
    .lock                flock: one saver at a time across processes

A save writes a fresh version folder, then swaps the manifest atomically, then deletes older
folders, so a kill at any moment leaves a consistent index (or none: then the caller rebuilds
it from the store).  Reading checks the manifest's own checksum and every file's size and
SHA-256 before mapping anything.

Thread-safety: the caller serialises calls on one folder within a process; :func:`locked`
serialises savers across processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import mmap
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np

from .._io import canonical_checksum, write_private_atomic
from ..errors import BiomatchError
from ..template import FINGER_POSITIONS
from .finger_index import FingerIndex

__all__ = ["FORMAT", "FORMAT_VERSION", "MAX_KEY", "MANIFEST", "Column", "checked_manifest", "check_file", "locked",
           "read_manifest", "write_version", "read_version", "reseal_version"]

log = logging.getLogger(__name__)

FORMAT = "biomatch-finger-index"
FORMAT_VERSION = 2
"""2: rows files hold int32 subject keys only; 1 (read, converted): int64 finger ids and keys."""
_READABLE = (1, 2)
MAX_KEY = 2**31 - 1
"""The largest subject key a row holds (int32)."""
MANIFEST = "manifest.json"
_LOCK = ".lock"
_VERSION_NAME = re.compile(r"v[0-9a-f]{12}")
_FILE_NAME = re.compile(r"(pos\d\d\.faiss(\.removed)?|rows\d\d\.npz)")


class Column:
    """A growable int32 array (amortised appends, views without copies): exactly sized when
    loaded, grown by a quarter when appended to (slack at most 25%, not doubling's 100%)."""

    __slots__ = ("_data", "_n")

    def __init__(self, data: np.ndarray | None = None, dtype=np.int32):
        self._data = np.zeros(16, dtype) if data is None else np.asarray(data, dtype)  # no copy
        self._n = 0 if data is None else len(self._data)

    def extend(self, values: np.ndarray) -> None:
        need = self._n + len(values)
        if need > len(self._data):
            grown = np.zeros(max(need, int(len(self._data) * 1.25) + 1), self._data.dtype)
            grown[:self._n] = self._data[:self._n]
            self._data = grown
        self._data[self._n:need] = values
        self._n = need

    def view(self) -> np.ndarray:
        return self._data[:self._n]

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    def __len__(self) -> int:
        return self._n


def checked_manifest(m: dict) -> str:
    """The version folder of a saved index manifest, its fields checked (raises ValueError)."""
    if m.get("checksum") != canonical_checksum(m):
        raise ValueError("manifest checksum mismatch (damaged, edited, or written before checksums)")
    if m.get("version") not in _READABLE:
        raise ValueError(f"version: expected one of {list(_READABLE)}, got {m.get('version')!r}")
    current = m.get("current")
    if not isinstance(current, str) or not _VERSION_NAME.fullmatch(current):
        raise ValueError(f"current: expected a version folder name v + 12 hex digits, got {current!r}")
    for key in ("indexed_upto", "removals_upto"):
        v = m.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{key}: expected an int >= 0, got {v!r}")
    files, rows = m.get("files"), m.get("rows")
    if not isinstance(files, dict) or not isinstance(rows, dict):
        raise ValueError("expected the files and rows tables")
    for ps in rows:
        if not (isinstance(ps, str) and ps.isdigit() and int(ps) in FINGER_POSITIONS):
            raise ValueError(f"rows: expected positions 1-10, got {ps!r}")
        for name in (f"pos{int(ps):02d}.faiss", f"rows{int(ps):02d}.npz"):
            if name not in files:
                raise ValueError(f"files: {name} has no checksum")
    for name in files:
        if not _FILE_NAME.fullmatch(name):
            raise ValueError(f"files: unexpected file name {name!r}")
    return current


def check_file(path: Path, want: dict) -> None:
    """Raise ValueError unless ``path`` has the size and SHA-256 its manifest recorded.

    Hashing costs ~0.3 s per GB at open.  It reads through a mapping of its own, advised for
    2 MiB pages and closed afterwards (the process's RSS is left as it was): being the first
    reader of a file not yet cached, it brings the file into the page cache in 2 MiB folios, which
    the FAISS mapping made afterwards maps whole (see :func:`~biomatch._io.advise_huge_pages`;
    plain reads left about half of a 1M gallery's codes on 4 KiB pages)."""
    size = path.stat().st_size
    if size != want.get("bytes"):
        raise ValueError(f"{path.name}: {size} bytes, the manifest recorded {want.get('bytes')}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                if hasattr(mmap, "MADV_HUGEPAGE"):  # Linux
                    m.madvise(mmap.MADV_HUGEPAGE)
                view = memoryview(m)
                try:
                    for at in range(0, size, 1 << 20):
                        h.update(view[at:at + (1 << 20)])
                finally:
                    view.release()
    if h.hexdigest() != want.get("sha256"):
        raise ValueError(f"{path.name}: checksum mismatch")


@contextlib.contextmanager
def locked(folder: Path, exclusive: bool):
    """flock of ``folder/.lock``: exclusive for a saver, shared for a reader."""
    try:
        fd = os.open(folder / _LOCK, (os.O_RDWR | os.O_CREAT) if exclusive else os.O_RDONLY, 0o600)
    except OSError:
        if exclusive:
            raise
        yield  # a read-only gallery without a lock file: nobody saves concurrently
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def read_manifest(folder: Path) -> dict | None:
    """The parsed manifest of ``folder`` if it is a finger-code index manifest, else None (logged)."""
    try:
        m = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("index %s: unreadable manifest (%s); rebuilding from the store", folder, exc)
        return None
    return m if isinstance(m, dict) and m.get("format") == FORMAT else None


def _aad(folder: Path, version: str, name: str) -> bytes:
    """Associated data of a sealed index file: its shard, version and name (a file copied onto
    another shard, version or position fails authentication)."""
    return f"biomatch-index|{folder.parent.name}|{version}|{name}".encode()


def write_version(folder: Path, header: dict, indexes: dict, keys: dict, cipher=None) -> str:
    """Write a new version folder, swap the manifest, delete older versions; returns the version.

    ``header``: generation, n_bits, factory, indexed_upto, removals_upto (manifest fields);
    ``keys``: per position, the :class:`Column` of its rows' subject keys.
    ``cipher``: an encrypted gallery's key ring (``seal(plaintext, aad)``): every file of the
    version is then sealed (the finger codes are personal data: see the README), and the
    manifest says so.  Call under ``locked(folder, exclusive=True)``.
    """
    version = f"v{uuid.uuid4().hex[:12]}"
    vdir = folder / version
    vdir.mkdir(mode=0o700)
    seal = None
    if cipher is not None:
        cipher.writing()
        seal = lambda data, name: cipher.seal(data, _aad(folder, version, name))  # noqa: E731
    rows, files = {}, {}
    for p, index in sorted(indexes.items()):
        files.update(index.save(vdir / f"pos{p:02d}.faiss", seal=seal))
        buf = io.BytesIO()
        np.savez(buf, keys=np.asarray(keys[p].view(), np.int32))
        data = buf.getvalue()
        if seal is not None:
            data = seal(data, f"rows{p:02d}.npz")
        write_private_atomic(vdir / f"rows{p:02d}.npz", data)
        files[f"rows{p:02d}.npz"] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        rows[str(p)] = index.ntotal
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "generation": header["generation"],
                "n_bits": header["n_bits"], "factory": header["factory"], "indexed_upto": header["indexed_upto"],
                "removals_upto": header["removals_upto"], "current": version, "rows": rows, "files": files,
                "sealed": cipher is not None}
    manifest["checksum"] = canonical_checksum(manifest)
    write_private_atomic(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    for other in folder.glob("v*"):
        if other.is_dir() and other.name != version:
            shutil.rmtree(other, ignore_errors=True)
    return version


def read_version(folder: Path, m: dict, cipher=None) -> tuple[dict, dict]:
    """``(indexes, keys)`` per position of the version ``m`` names, every file checked first
    and each index memory-mapped read-only (read into memory and decrypted with ``cipher`` when
    the version is sealed; a sealed version without a cipher, or a plain one with, is refused).

    Raises
    ------
    ValueError, BiomatchError, OSError ...
        Anything wrong: the caller discards the files and rebuilds from the store.
    """
    index, keys = {}, {}
    version = checked_manifest(m)
    vdir = folder / version
    if bool(m.get("sealed", False)) != (cipher is not None):
        raise ValueError("sealed index files without the gallery's key, or plain ones in an encrypted gallery")
    unseal = None
    if cipher is not None:
        unseal = lambda data, name: cipher.open(data, _aad(folder, version, name))  # noqa: E731
    for name, want in m["files"].items():
        check_file(vdir / name, want)
    for ps, n in m["rows"].items():
        p = int(ps)
        ix = FingerIndex.open(vdir / f"pos{p:02d}.faiss", mmap=True, unseal=unseal)
        rows_file = vdir / f"rows{p:02d}.npz"
        source = rows_file if unseal is None else io.BytesIO(unseal(rows_file.read_bytes(), rows_file.name))
        with np.load(source, allow_pickle=False) as z:
            k = z["keys"]
        if m["version"] == 1:  # int64 keys beside the finger ids, which the rows no longer keep
            if len(k) and (k.min() < 1 or k.max() > MAX_KEY):
                raise BiomatchError(f"position {p}: subject keys outside 1..{MAX_KEY}")
            k = k.astype(np.int32)
        if k.dtype != np.int32 or k.ndim != 1:
            raise BiomatchError(f"position {p}: expected int32 subject keys, got {k.dtype} of shape {k.shape}")
        if not (ix.ntotal == len(k) == int(n)):
            raise BiomatchError(f"position {p}: {ix.ntotal} codes, {len(k)} keys, manifest {n}")
        index[p], keys[p] = ix, Column(k)
    return index, keys


def reseal_version(folder: Path, cipher) -> bool:
    """Re-seal the current version's files under ``cipher``'s active data key (a key rotation
    that re-encrypts, before the old data keys are dropped).  Returns False when there is no
    sealed version to re-seal.

    Each file is replaced atomically, then the manifest with the new sizes and digests; a kill
    in between leaves files the manifest does not describe, which the next open refuses and
    rebuilds from the store (derived data: nothing is lost).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return False
    with locked(folder, exclusive=True):
        m = read_manifest(folder)
        if m is None or not m.get("sealed"):
            return False
        version = checked_manifest(m)
        vdir = folder / version
        cipher.writing()
        files = {}
        for name, want in m["files"].items():
            check_file(vdir / name, want)
            aad = _aad(folder, version, name)
            data = cipher.seal(cipher.open((vdir / name).read_bytes(), aad), aad)
            write_private_atomic(vdir / name, data)
            files[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        m = dict(m, files=files)
        m["checksum"] = canonical_checksum(m)
        write_private_atomic(folder / MANIFEST, json.dumps(m, indent=1, sort_keys=True).encode())
    return True
