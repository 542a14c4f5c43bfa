"""API keys and client certificates with roles: created, listed and revoked by the CLI, checked by the service.

A key is ``bmk_<key id>_<secret>``: the key id (16 hex digits) finds its record in O(1); the
secret is 32 random bytes (``secrets.token_bytes``), base64url.  Only the SHA-256 of the whole
key is stored (a key holds 256 random bits, so a fast hash is enough: there is nothing to
guess), compared with :func:`hmac.compare_digest`.  The key itself is shown once, when it is
created.

The keys live in ``GALLERY/service/keys.json`` (mode 0600, replaced atomically under a lock
file, so that two ``biomatch keys`` commands cannot lose each other's change).  A running
service re-reads the file when it changes: a revoked key is refused from the next request on,
without a restart.

Client certificates are the alternative to keys (``biomatch serve --tls-client-ca CA``): a
certificate is registered by ``biomatch keys add-cert GALLERY --cert client.pem --role ROLE``,
which stores its SHA-256 fingerprint (of the DER bytes: the whole certificate, so a re-issued
certificate with the same subject is another identity and must be registered again), its
subject, issuer, serial and expiry, never a private key.  Its id is ``cert-`` + the first 16 hex
digits of the fingerprint; it is listed and revoked like a key.  The TLS handshake proves that
the client holds the certificate's private key and that the CA signed it; this store says which
roles it has (:meth:`KeyStore.authenticate_cert`).

Roles
-----
``enrol``       enrol (dedup then insert)
``search``      deduplicate, identify, verify, subject metadata, stats
``adjudicate``  the REVIEW queue: list cases, record an examiner's outcome; subject metadata
``audit``       read and verify the audit log
``admin``       remove subjects, stats, metrics, subject metadata
``metrics``     ``GET /metrics`` only (a Prometheus scrape key that can read nothing else)
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import ssl
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .._io import write_private_atomic
from ..errors import CorruptStoreError, InvalidInputError, StorageError, invalid

__all__ = ["ROLES", "ApiKey", "KeyStore", "UnknownKeyError", "service_dir", "cert_fingerprint", "peer_certificate"]

ROLES = ("enrol", "search", "adjudicate", "audit", "admin", "metrics")
KEYS_FILE = "keys.json"
_LOCK_FILE = "keys.lock"
_PREFIX = "bmk"
_KEY_RE = re.compile(r"^bmk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_MAX_NAME_CHARS = 200


class UnknownKeyError(InvalidInputError):
    """A key id names no key of this gallery."""


def service_dir(gallery_path, create: bool = True) -> Path:
    """``GALLERY/service`` (mode 0700): the keys, the audit log and the service's state."""
    gallery_path = Path(gallery_path)
    if not (gallery_path / "manifest.json").is_file():
        from ..errors import NotAGalleryError

        raise NotAGalleryError(f"path: expected a biomatch gallery folder, {str(gallery_path)!r} has no manifest.json")
    d = gallery_path / "service"
    if create and not d.is_dir():
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StorageError(f"path: cannot create {str(d)!r}: {exc.strerror}") from exc
    return d


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def cert_fingerprint(der: bytes) -> str:
    """SHA-256 (hex) of a certificate's DER bytes: what a registered certificate is known by."""
    return hashlib.sha256(der).hexdigest()


def peer_certificate(scope) -> bytes | None:
    """The DER bytes of the verified client certificate of a request (ASGI TLS extension), else None.

    Filled from the TLS connection by :class:`biomatch.service.tls.PeerCertProtocol` (or by a
    server that implements the extension), never from a request header.
    """
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or ()
    if not chain:
        return None
    try:
        return ssl.PEM_cert_to_DER_cert(chain[0])
    except (ValueError, TypeError):
        return None


def _read_certificate(pem: bytes, where: str) -> tuple[bytes, dict]:
    """The DER bytes of the first certificate in ``pem`` and what is shown of it (subject, issuer,
    serial, expiry).  Nothing else of the file is read: a private key beside it is ignored."""
    m = re.search(rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----", pem, re.S)
    if m is None:
        raise invalid("cert", "a PEM file holding a certificate (-----BEGIN CERTIFICATE-----)", where)
    try:
        der = ssl.PEM_cert_to_DER_cert(m.group(0).decode("ascii"))
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        info = {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                "serial": format(cert.serial_number, "x"),
                "not_after_utc": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid("cert", "a readable X.509 certificate", f"{where} ({exc})") from None
    return der, info


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class ApiKey:
    """One key's record (never the key itself)."""

    key_id: str
    name: str
    roles: tuple
    created_utc: str
    digest: str
    revoked_utc: str | None = None
    kind: str = "key"  # "key" (a bearer key; digest: SHA-256 of the key) or "cert" (digest: the fingerprint)
    cert: dict | None = None  # a certificate's subject, issuer, serial and expiry

    @property
    def active(self) -> bool:
        return self.revoked_utc is None

    @property
    def who(self) -> str:
        """How the audit log names the holder: the key id, or the certificate's subject."""
        return self.cert["subject"] if self.kind == "cert" and self.cert else self.key_id

    def public(self) -> dict:
        """The record without a key's digest (what ``keys list`` shows; a certificate's
        fingerprint is public and shown)."""
        d = asdict(self)
        digest = d.pop("digest")
        d["roles"] = list(self.roles)
        if self.kind == "cert":
            d["sha256"] = digest
        else:
            d.pop("cert")
        return d

    def record(self) -> dict:
        d = dict(asdict(self), roles=list(self.roles))
        if self.kind == "key":  # the file of a gallery with keys only stays as it was
            d.pop("kind")
            d.pop("cert")
        return d


class KeyStore:
    """The API keys of one gallery.

    Thread-safe; safe across processes (the file is replaced atomically under a lock file, and
    read again whenever its inode, size or time changes).  Memory: ~300 B per key.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / KEYS_FILE
        self._lock = threading.Lock()
        self._sig = None
        self._keys: dict[str, ApiKey] = {}
        self._certs: dict[str, ApiKey] = {}  # by fingerprint

    # ---- reading -------------------------------------------------------------------------------
    def _load(self) -> dict[str, ApiKey]:
        """The keys, re-read when the file changed (a revocation by the CLI is seen at once)."""
        try:
            st = os.stat(self.path)
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            sig = None
        with self._lock:
            if sig == self._sig:  # atomic replacement gives a new inode: a change is always seen
                return self._keys
            keys: dict[str, ApiKey] = {}
            if sig is not None:
                try:
                    doc = json.loads(self.path.read_bytes())
                    for rec in doc["keys"]:
                        k = ApiKey(rec["key_id"], rec["name"], tuple(rec["roles"]), rec["created_utc"],
                                   rec["digest"], rec.get("revoked_utc"), rec.get("kind", "key"), rec.get("cert"))
                        keys[k.key_id] = k
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    raise CorruptStoreError(f"{str(self.path)!r}: expected the service's key file, cannot read "
                                            f"it ({type(exc).__name__}: {exc})") from None
            self._keys, self._sig = keys, sig
            self._certs = {k.digest: k for k in keys.values() if k.kind == "cert"}
            return keys

    def list(self) -> list[ApiKey]:
        """Every key, active and revoked, oldest first."""
        return sorted(self._load().values(), key=lambda k: (k.created_utc, k.key_id))

    def authenticate(self, token: str | None) -> ApiKey | None:
        """The active key whose secret is ``token``, else None (constant time in the secret)."""
        if not isinstance(token, str):
            return None
        m = _KEY_RE.match(token)
        keys = self._load()
        rec = keys.get(m.group(1)) if m else None
        if rec is not None and rec.kind != "key":
            rec = None
        # Compare even when no record matches, so that timing does not tell a known key id.
        ok = hmac.compare_digest(rec.digest if rec else "0" * 64, _digest(token))
        return rec if ok and rec is not None and rec.active else None

    def authenticate_cert(self, der: bytes | None) -> ApiKey | None:
        """The active registered certificate whose DER bytes are ``der`` (verified by the TLS
        handshake), else None.  The fingerprint is not secret: a plain lookup."""
        if not der:
            return None
        self._load()
        with self._lock:
            rec = self._certs.get(cert_fingerprint(der))
        return rec if rec is not None and rec.active else None

    @staticmethod
    def claimed_id(token: str | None) -> str | None:
        """The key id a presented token claims (for the audit log of a refused request)."""
        m = _KEY_RE.match(token) if isinstance(token, str) else None
        return m.group(1) if m else None

    # ---- writing -------------------------------------------------------------------------------
    def _update(self, change) -> object:
        self.folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.folder / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._lock:
                self._sig = None  # read afresh under the lock
            keys = dict(self._load())
            result = change(keys)
            doc = {"format": "biomatch-service-keys", "version": 1,
                   "keys": [k.record() for k in
                            sorted(keys.values(), key=lambda k: (k.created_utc, k.key_id))]}
            write_private_atomic(self.path, json.dumps(doc, indent=1, sort_keys=True).encode())
            with self._lock:
                self._sig = None
            return result
        finally:
            os.close(fd)

    @staticmethod
    def _check(roles, name) -> tuple:
        roles = tuple(dict.fromkeys(roles or ()))
        if not roles:
            raise invalid("roles", f"at least one of {list(ROLES)}", [])
        bad = [r for r in roles if r not in ROLES]
        if bad:
            raise invalid("roles", f"roles among {list(ROLES)}", bad[0])
        if not isinstance(name, str) or len(name) > _MAX_NAME_CHARS or not name.isprintable():
            raise invalid("name", f"printable text of at most {_MAX_NAME_CHARS} characters", name)
        return roles

    def create(self, roles, name: str = "") -> tuple[ApiKey, str]:
        """Create a key with ``roles``; returns its record and the key (shown once, never stored).

        Raises
        ------
        InvalidInputError
            No role, an unknown role, or a name that is not printable text of at most 200 characters.
        """
        roles = self._check(roles, name)
        key_id = secrets.token_hex(8)
        token = f"{_PREFIX}_{key_id}_{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip('=')}"
        rec = ApiKey(key_id, name, roles, _now(), _digest(token))

        def add(keys):
            keys[key_id] = rec
            return rec

        self._update(add)
        return rec, token

    def add_cert(self, pem: bytes, roles, name: str = "", where: str = "cert") -> ApiKey:
        """Register a client certificate (PEM) with ``roles``; its record (fingerprint, subject ...).

        Raises
        ------
        InvalidInputError
            No certificate in ``pem``, an unknown role, a bad name, or the certificate is
            registered already (a revoked one included: revocation is final).
        """
        roles = self._check(roles, name)
        der, info = _read_certificate(pem, where)
        fp = cert_fingerprint(der)
        rec = ApiKey("cert-" + fp[:16], name, roles, _now(), fp, None, "cert", info)

        def add(keys):
            old = keys.get(rec.key_id)
            if old is not None:  # a revoked certificate stays revoked: a compromised one must not come back
                raise invalid("cert", "a certificate not registered yet", f"{where} (registered as {old.key_id}"
                              f"{', revoked: issue a new certificate' if not old.active else ''})")
            keys[rec.key_id] = rec
            return rec

        return self._update(add)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (kept in the file, marked revoked, so that the audit log's ids stay explained).

        Raises
        ------
        UnknownKeyError
        """
        def rev(keys):
            if key_id not in keys:
                raise UnknownKeyError(f"key_id: expected the id of a key of this gallery, got {key_id!r}")
            if keys[key_id].active:
                keys[key_id] = replace(keys[key_id], revoked_utc=_now())
            return keys[key_id]

        return self._update(rev)
