"""Encryption at rest: key-encryption keys, the gallery's wrapped data keys, sealed records.

Envelope encryption, as a KMS does it::

    key-encryption key (KEK)    32 bytes from a key file (0600) or BIOMATCH_GALLERY_KEY (base64),
                                or a KMS behind the KeyProvider protocol; never stored by biomatch
      └─ wraps ──► data keys (DEKs), AES-256, random; kept WRAPPED in the gallery manifest
                   ("encryption": kek_id, active DEK id, {DEK id: wrapped DEK})
           └─ seal ──► every template, face embedding and metadata field (AES-256-GCM)

A sealed record is ``magic "BX" | version 1 | DEK id (u32 BE) | nonce (12 random bytes) |
ciphertext | tag (16)`` (35 bytes more than the plaintext).  Its associated data is the header
plus the row it belongs to (built by :mod:`~biomatch.dedup.store`: shard, subject key, finger
position, subject id, field), so a sealed value copied onto another row, field or shard fails
authentication.  The record names its DEK, so records under two DEKs can be read side by side
while a re-encryption (:mod:`~biomatch.dedup.rekey`) runs.

Key ids: a local KEK's id is ``local:`` + 16 hex digits of an HMAC-SHA256 of the key (the key
cannot be recovered from it), stored in the manifest, so a wrong key is told apart from damage
before anything is read (:class:`~biomatch.errors.GalleryKeyError` names both ids).  DEK ids are
small integers (``dek-1``, ``dek-2`` ...).

Nonces are random (96 bits): NIST SP 800-38D keeps the chance of a repeat below 2^-32 up to 2^32
records sealed under one DEK, ~400 million ten-finger persons with a face and metadata.

Thread-safety: :class:`Keyring` is shared by the shards of a gallery; it holds one AESGCM object
per DEK (no per-record key derivation) and a lock around reloading the key set.  Memory: ~1 KB
per DEK.  The KEK is read from its source when a key set is unwrapped (at open, when the
manifest gained a DEK, at a rotation) and not kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import struct
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

from .._io import canonical_checksum
from ..errors import CorruptStoreError, GalleryKeyError, InvalidInputError, invalid

__all__ = ["ALGORITHM", "KEY_ENV", "KEY_BYTES", "OVERHEAD_BYTES", "KeyProvider", "LocalKey", "KeyFile", "KeyEnv",
           "Keyring", "SealBrokenError", "new_section", "check_section", "describe_section", "generate_key_file",
           "dek_name", "sealed_key_id", "SEALED_COLUMNS_TABLE", "side_aad"]

ALGORITHM = "AES-256-GCM"
KEY_ENV = "BIOMATCH_GALLERY_KEY"
KEY_BYTES = 32
_MAGIC = b"BX"
_VERSION = 1
_HEADER = struct.Struct(">2sBI12s")  # magic, version, DEK id, nonce
_TAG = 16
OVERHEAD_BYTES = _HEADER.size + _TAG
KEY_ID_OFFSET = 3  # byte offset of the DEK id in a sealed record (SQL: substr(blob, 4, 4))
# Side stores of a gallery (the service's SQLite files in GALLERY/service/) declare their sealed
# columns in this table -- (tbl, col, key_cols "a,b", aad_prefix) -- so that a re-encryption
# re-seals them without knowing their formats (:func:`biomatch.dedup.rekey.reseal_side_store`).
SEALED_COLUMNS_TABLE = "biomatch_sealed_columns"


def side_aad(prefix: str, *values) -> bytes:
    """The associated data of a side store's sealed value: ``prefix|value|value...`` (the row it
    belongs to; a value moved to another row fails authentication)."""
    return "|".join([prefix, *(str(v) for v in values)]).encode()


def _aesgcm(key: bytes):
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # imported only by encrypted galleries

    return AESGCM(key)


def _invalid_tag():
    from cryptography.exceptions import InvalidTag

    return InvalidTag


def dek_name(dek_id: int) -> str:
    return f"dek-{int(dek_id)}"


class SealBrokenError(CorruptStoreError):
    """A sealed record fails authentication under the right key: altered, or moved from another
    row (the store names the row).  A kind of damage, never a wrong key."""


# ---- key-encryption keys --------------------------------------------------------------------------
@runtime_checkable
class KeyProvider(Protocol):
    """Where a gallery's key-encryption key lives: wraps and unwraps its data keys.

    A KMS implementation calls the KMS's encrypt / decrypt with ``context`` as its encryption
    context and never hands out the KEK; ``key_id`` is then the KMS key's id.  Implementations
    must be picklable without key material (the Ray cluster sends them to shard processes,
    which read the key from the same source).
    """

    @property
    def key_id(self) -> str: ...

    def wrap(self, dek: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


class LocalKey:
    """A 32-byte KEK held in memory; DEKs are wrapped with AES-256-GCM (``nonce | ct | tag``).

    Not picklable (key material must not travel): use :class:`KeyFile` or :class:`KeyEnv`.
    """

    def __init__(self, kek: bytes, source: str = "a key given in memory"):
        if not isinstance(kek, (bytes, bytearray)) or len(kek) != KEY_BYTES:
            raise GalleryKeyError(f"key: expected {KEY_BYTES} bytes from {source}, got "
                                  f"{len(kek) if isinstance(kek, (bytes, bytearray)) else type(kek).__name__}")
        self._kek = bytes(kek)
        self.source = source

    @property
    def key_id(self) -> str:
        return "local:" + hmac.new(self._kek, b"biomatch gallery key id", hashlib.sha256).hexdigest()[:16]

    def wrap(self, dek: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + _aesgcm(self._kek).encrypt(nonce, dek, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        try:
            return _aesgcm(self._kek).decrypt(wrapped[:12], wrapped[12:], context)
        except _invalid_tag():
            raise GalleryKeyError(f"key {self.key_id} from {self.source} does not unwrap the gallery's data key "
                                  f"(it is not the key that wrapped it)", None, self.key_id) from None

    def __reduce__(self):
        raise TypeError("LocalKey holds key material and is not picklable; use KeyFile or KeyEnv")

    def __repr__(self) -> str:
        return f"LocalKey({self.key_id}, from {self.source})"


class _ReadOnUse:
    """A KEK read from its source at each use (``load``), never kept: the three provider members."""

    @property
    def key_id(self) -> str:
        return self.load().key_id

    def wrap(self, dek: bytes, context: bytes) -> bytes:
        return self.load().wrap(dek, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        return self.load().unwrap(wrapped, context)

    def load(self) -> LocalKey:
        raise NotImplementedError


class KeyFile(_ReadOnUse):
    """A KEK in a file of exactly 32 random bytes that only its owner may read (mode 0600 or 0400).

    The file is read each time a key set is unwrapped, never kept; a file whose mode lets the
    group or others read or write it is refused (:class:`~biomatch.errors.GalleryKeyError`).
    """

    def __init__(self, path):
        if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
            raise invalid("key_file", "a file path (str or os.PathLike)", type(path).__name__)
        self.path = Path(path)

    def load(self) -> LocalKey:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise GalleryKeyError(f"key_file: cannot open {str(self.path)!r}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise GalleryKeyError(f"key_file: expected a regular file, {str(self.path)!r} is not one")
            if st.st_mode & 0o077:
                raise GalleryKeyError(f"key_file: expected a file only its owner can read (mode 0600), "
                                      f"{str(self.path)!r} has mode {stat.S_IMODE(st.st_mode):04o} "
                                      f"(chmod 600 {self.path})")
            data = os.read(fd, KEY_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) != KEY_BYTES:
            raise GalleryKeyError(f"key_file: expected {KEY_BYTES} bytes in {str(self.path)!r}, got "
                                  f"{len(data) if len(data) <= KEY_BYTES else 'more'} (make one with "
                                  f"biomatch gallery new-key FILE)")
        return LocalKey(data, f"key file {str(self.path)!r}")

    def __repr__(self) -> str:
        return f"KeyFile({str(self.path)!r})"


class KeyEnv(_ReadOnUse):
    """A KEK in an environment variable, base64 of 32 bytes (default ``BIOMATCH_GALLERY_KEY``)."""

    def __init__(self, name: str = KEY_ENV):
        if not isinstance(name, str) or not name:
            raise invalid("name", "an environment variable name", name)
        self.name = name

    def load(self) -> LocalKey:
        text = os.environ.get(self.name)
        if not text:
            raise GalleryKeyError(f"key: the environment variable {self.name} is not set")
        try:
            data = base64.b64decode(text.strip(), validate=True)
        except ValueError:
            raise GalleryKeyError(f"key: expected {self.name} to hold base64 of {KEY_BYTES} bytes, "
                                  f"it is not valid base64") from None
        if len(data) != KEY_BYTES:
            raise GalleryKeyError(f"key: expected {self.name} to hold base64 of {KEY_BYTES} bytes, "
                                  f"it holds {len(data)} bytes")
        return LocalKey(data, f"environment variable {self.name}")

    def __repr__(self) -> str:
        return f"KeyEnv({self.name!r})"


def check_provider(key, name: str = "key") -> KeyProvider:
    if not isinstance(key, KeyProvider):
        raise invalid(name, "a KeyProvider (KeyFile, KeyEnv, LocalKey or a KMS implementation)", type(key).__name__)
    return key


def generate_key_file(path) -> str:
    """Write a new random KEK to ``path`` (created 0600, never replaced); returns its key id."""
    path = Path(path)
    data = os.urandom(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInputError(f"path: expected a new file, {str(path)!r} exists (a key file is never "
                                f"replaced: the galleries it protects would be lost)") from None
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return LocalKey(data).key_id


# ---- the manifest's key set -------------------------------------------------------------------
def _context(gallery_id: str, dek_id: int) -> bytes:
    return b"biomatch gallery data key\x00" + gallery_id.encode() + b"\x00" + str(int(dek_id)).encode()


def new_section(provider: KeyProvider, gallery_id: str) -> dict:
    """The manifest's ``encryption`` section of a new gallery: one fresh DEK, wrapped."""
    check_provider(provider)
    kek_id = provider.key_id
    return {"algorithm": ALGORITHM, "kek_id": kek_id, "active": 1,
            "keys": {"1": base64.b64encode(provider.wrap(os.urandom(KEY_BYTES), _context(gallery_id, 1))).decode()},
            "reencrypt": None}


def check_section(section) -> None:
    """Raise ValueError unless ``section`` is a well-formed ``encryption`` section."""
    if not isinstance(section, dict) or section.get("algorithm") != ALGORITHM:
        raise ValueError(f"encryption: expected algorithm {ALGORITHM}, got "
                         f"{section.get('algorithm') if isinstance(section, dict) else section!r}")
    if not isinstance(section.get("kek_id"), str) or not section["kek_id"]:
        raise ValueError(f"encryption: expected kek_id a str, got {section.get('kek_id')!r}")
    keys = section.get("keys")
    if not isinstance(keys, dict) or not keys or not all(k.isdigit() and isinstance(v, str) for k, v in keys.items()):
        raise ValueError("encryption: expected keys {DEK id: wrapped DEK (base64)}")
    if str(section.get("active")) not in keys or isinstance(section.get("active"), bool):
        raise ValueError(f"encryption: active DEK {section.get('active')!r} is not in the key set")
    r = section.get("reencrypt")
    if r is not None and (not isinstance(r, dict) or r.get("to") != section["active"]):
        raise ValueError(f"encryption: reencrypt {r!r} must name the active DEK")


def describe_section(section: dict | None) -> dict:
    """What ``gallery info`` / ``stats`` show (ids only, nothing secret)."""
    if not section:
        return {"encrypted": False}
    r = section.get("reencrypt")
    return {"encrypted": True, "algorithm": section["algorithm"], "kek_id": section["kek_id"],
            "active_data_key": dek_name(section["active"]),
            "data_keys": [dek_name(k) for k in sorted(map(int, section["keys"]))],
            "reencryption": None if r is None else f"in progress to {dek_name(r['to'])}"}


def read_section(manifest_path: Path) -> dict | None:
    """The ``encryption`` section of the manifest at ``manifest_path``, its checksum verified
    (the manifest is replaced atomically, so a read sees one version or the other)."""
    try:
        doc = json.loads(Path(manifest_path).read_bytes())
    except (OSError, ValueError) as exc:
        raise CorruptStoreError(f"manifest {str(manifest_path)!r}: unreadable ({exc})") from None
    if not isinstance(doc, dict) or doc.get("checksum") != canonical_checksum(doc):
        raise CorruptStoreError(f"manifest {str(manifest_path)!r}: checksum mismatch, the file is damaged or was edited")
    section = doc.get("encryption")
    if section is not None:
        try:
            check_section(section)
        except ValueError as exc:
            raise CorruptStoreError(f"manifest {str(manifest_path)!r}: {exc}") from None
    return section


def sealed_key_id(blob) -> int | None:
    """The DEK id a sealed record names (None: not a sealed record)."""
    if blob is None or len(blob) < OVERHEAD_BYTES or bytes(blob[:2]) != _MAGIC:
        return None
    return struct.unpack_from(">I", blob, KEY_ID_OFFSET)[0]


class Keyring:
    """The unwrapped DEKs of one gallery, sealing and opening its records.

    Parameters
    ----------
    provider : KeyProvider
        The gallery's KEK.
    manifest_path : Path
        The gallery manifest: the key set is re-read from it when a record names a DEK not yet
        held (another process started a re-encryption) and, before each write, when the file
        changed (so a writer always seals under the current active DEK).
    gallery_id : str
    section : dict, optional
        The manifest's ``encryption`` section as already read (else read here).

    Raises
    ------
    GalleryKeyError
        The provider's key id is not the gallery's, or its key does not unwrap the DEKs.
    """

    def __init__(self, provider: KeyProvider, manifest_path: Path, gallery_id: str, section: dict | None = None):
        self.provider = check_provider(provider)
        self.manifest_path = Path(manifest_path)
        self.gallery_id = gallery_id
        self._lock = threading.Lock()
        self._aeads: dict[int, object] = {}
        self._sig = None
        self._load(section if section is not None else self._read())

    def _read(self) -> dict:
        section = read_section(self.manifest_path)
        if section is None:
            raise GalleryKeyError(f"manifest {str(self.manifest_path)!r}: the gallery is not encrypted, "
                                  f"but a key was given")
        return section

    def _signature(self):
        try:
            st = os.stat(self.manifest_path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _load(self, section: dict) -> None:
        sig = self._signature()
        want = section["kek_id"]
        missing = [int(k) for k in section["keys"] if int(k) not in self._aeads]
        if missing:
            got = self.provider.key_id
            if got != want:
                raise GalleryKeyError(f"key: the gallery {str(self.manifest_path.parent)!r} is encrypted under key "
                                      f"{want}, the key given ({self.provider!r}) is {got}", want, got)
            for k in missing:
                dek = self.provider.unwrap(base64.b64decode(section["keys"][str(k)]), _context(self.gallery_id, k))
                self._aeads[k] = _aesgcm(dek)
        self.kek_id = want
        self.active = int(section["active"])
        self.section = section
        self._sig = sig

    def reload(self) -> None:
        """Re-read the key set from the manifest (new DEKs unwrapped; DEKs dropped by a finished
        re-encryption stay held: a read that began before it may still need one)."""
        with self._lock:
            self._load(self._read())

    def _refresh_if_changed(self) -> None:
        if self._signature() != self._sig:
            self.reload()

    @property
    def key_ids(self) -> list[int]:
        return sorted(self._aeads)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt under the active DEK (call :meth:`writing` once per write transaction first)."""
        nonce = os.urandom(12)
        head = _HEADER.pack(_MAGIC, _VERSION, self.active, nonce)
        return head + self._aeads[self.active].encrypt(nonce, plaintext, head + aad)

    def writing(self) -> None:
        """Before a write (under the gallery's write lock): follow a key set changed on disk, so
        that the rows written are sealed under the DEK a re-encryption is moving to."""
        self._refresh_if_changed()

    def open(self, blob, aad: bytes) -> bytes:
        """Decrypt and authenticate a sealed record.

        Raises
        ------
        GalleryKeyError
            The record names a DEK the key set does not hold (after re-reading it).
        SealBrokenError
            Not a sealed record, or its authentication fails (altered or moved).
        """
        blob = bytes(blob)
        if len(blob) < OVERHEAD_BYTES or blob[:2] != _MAGIC or blob[2] != _VERSION:
            raise SealBrokenError("not a sealed record of this version")
        dek = struct.unpack_from(">I", blob, KEY_ID_OFFSET)[0]
        aead = self._aeads.get(dek)
        if aead is None:
            self.reload()
            aead = self._aeads.get(dek)
            if aead is None:
                raise GalleryKeyError(f"a record of {str(self.manifest_path.parent)!r} is sealed under data key "
                                      f"{dek_name(dek)}, which the gallery's key set does not hold "
                                      f"(it holds {', '.join(dek_name(k) for k in self.key_ids)})", dek_name(dek))
        try:
            return aead.decrypt(blob[7:19], blob[19:], blob[:19] + aad)
        except _invalid_tag():
            raise SealBrokenError("authentication failed") from None

    def new_data_key(self, provider: KeyProvider | None = None) -> tuple[int, str]:
        """A fresh DEK for a re-encryption: ``(id, wrapped base64)`` under ``provider`` (default
        the current KEK); it is held here at once."""
        dek_id = max(map(int, self.section["keys"])) + 1
        dek = os.urandom(KEY_BYTES)
        wrapped = (provider or self.provider).wrap(dek, _context(self.gallery_id, dek_id))
        with self._lock:
            self._aeads[dek_id] = _aesgcm(dek)
        return dek_id, base64.b64encode(wrapped).decode()

    def rewrapped(self, section: dict, new_provider: KeyProvider) -> dict:
        """``section`` with every DEK unwrapped by the current KEK and wrapped by ``new_provider``."""
        keys = {}
        for k, w in section["keys"].items():
            dek = self.provider.unwrap(base64.b64decode(w), _context(self.gallery_id, int(k)))
            keys[k] = base64.b64encode(new_provider.wrap(dek, _context(self.gallery_id, int(k)))).decode()
        return dict(section, keys=keys, kek_id=new_provider.key_id)

    def __reduce__(self):
        raise TypeError("Keyring holds data keys and is not picklable; send its KeyProvider instead")

    def __repr__(self) -> str:
        return f"Keyring(kek {self.kek_id}, data keys {[dek_name(k) for k in self.key_ids]}, active {self.active})"
