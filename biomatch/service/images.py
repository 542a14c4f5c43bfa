"""Kept images: the finger and face images a registry submitted, for the examiner's page.

With ``biomatch serve --keep-images`` the service keeps, for each enrolled subject and for each
REVIEW case's probe, the images it was sent, as sent (the original evidence, and the smallest
form: a WSQ ten-print is ~60 KB where the same as PNG is ~1 MB); a finger image that came inside
an ANSI/NIST-ITL transaction is kept as the PNG of its decoded pixels.  A finger given as a
template has no image.  When the page asks for an image that a browser cannot show (WSQ,
JPEG 2000, TIFF...), it is decoded by biomatch's own readers (the checks of every image read)
and sent as PNG (:func:`for_display`).

``GALLERY/service/images.sqlite``: one row per (owner, kind, position), owner ``subject:<id>``
or ``case:<case id>``, kind ``finger`` (positions 1-10) or ``face`` (position 0).  In an
encrypted gallery every image is sealed with the gallery's data key (AES-256-GCM), its
associated data naming its owner, kind and position; the column is declared sealed, so
``gallery rotate-key --reencrypt`` re-seals it.  Keeping images in an unencrypted gallery is
refused unless asked for explicitly (``--keep-images-in-clear``).  A subject's images are
deleted with the subject (``DELETE /v1/subjects/{id}``; SQLite's ``secure_delete`` overwrites
them); a case's are moved to the subject when "different person" enrols the probe, and deleted
when the case is resolved otherwise.  A subject removed outside the service (``Gallery.remove`` in
another process) loses its images when the service next opens (:meth:`ImageStore.purge_absent`)
or when its image is asked for, whichever comes first.

The images are written after the enrolment commits: a crash between the two leaves the subject
enrolled without its images (the page then draws the minutiae on a blank print, as without
kept images).

Memory: one image at a time.  Disk: the images' own size plus ~1% (README: measured).
"""

from __future__ import annotations

from ..dedup.encryption import SealBrokenError, side_aad
from ..errors import CorruptStoreError
from ._db import ServiceDB

__all__ = ["ImageStore", "subject_owner", "case_owner", "encode_finger", "for_display", "KINDS", "IMAGES_FILE",
           "record_images"]

IMAGES_FILE = "images.sqlite"
KINDS = ("finger", "face")
_AAD = "biomatch-image"
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"


def subject_owner(subject_id: str) -> str:
    return "subject:" + subject_id


def case_owner(case_id: str) -> str:
    return "case:" + case_id


def encode_finger(grey) -> bytes:
    """A decoded finger image (uint8, 2-D) as PNG bytes (lossless)."""
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(grey, dtype=np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def for_display(kind: str, data: bytes) -> tuple[bytes, str]:
    """``(bytes, media type)`` a browser shows: PNG and JPEG as kept; any other format (WSQ,
    JPEG 2000, TIFF, BMP) decoded by biomatch's readers and re-encoded as PNG."""
    if data.startswith(_PNG):
        return data, "image/png"
    if data.startswith(_JPEG):
        return data, "image/jpeg"
    import cv2

    from ..imaging import decode_bytes

    img = decode_bytes(data, f"kept {kind} image", mode="grey8" if kind == "finger" else "bgr8")
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes(), "image/png"


def record_images(finger_images: dict, positions, face_bytes: bytes | None) -> dict:
    """``{(kind, position): bytes}`` to keep of a record: each finger of ``positions`` given as an
    image (its file as sent; decoded pixels as PNG), and the face (position 0) as sent."""
    out = {}
    for p in positions:
        img = finger_images.get(p)
        if img is not None:
            out[("finger", int(p))] = img if isinstance(img, bytes) else encode_finger(img)
    if face_bytes is not None:
        out[("face", 0)] = bytes(face_bytes)
    return out


class ImageStore:
    """Kept images, sealed when the gallery is encrypted.

    Parameters
    ----------
    path : path
    cipher : Keyring or None
        The gallery's key ring (None: a plain gallery, images stored in clear).

    Notes
    -----
    Thread-safe (:class:`~biomatch.service._db.ServiceDB`).
    """

    def __init__(self, path, cipher=None):
        self._cipher = cipher
        self._db = ServiceDB(path, "image store", [
            "CREATE TABLE IF NOT EXISTS images (owner TEXT NOT NULL, kind TEXT NOT NULL, position INTEGER NOT NULL, "
            "data BLOB NOT NULL, PRIMARY KEY (owner, kind, position))"],
            sealed=[("images", "data", ("owner", "kind", "position"), _AAD)] if cipher is not None else ())
        self.path = self._db.path

    def close(self) -> None:
        self._db.close()

    def put(self, owner: str, images: dict) -> int:
        """Keep ``{(kind, position): bytes}`` for ``owner`` (one transaction; replaces what it had)."""
        if not images:
            return 0
        if self._cipher is not None:
            self._cipher.writing()
        rows = []
        for (kind, position), data in sorted(images.items()):
            if kind not in KINDS:
                raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
            blob = data if self._cipher is None else self._cipher.seal(data, side_aad(_AAD, owner, kind, position))
            rows.append((owner, kind, int(position), blob))
        with self._db.transaction() as db:
            db.execute("DELETE FROM images WHERE owner = ?", (owner,))
            db.executemany("INSERT INTO images (owner, kind, position, data) VALUES (?, ?, ?, ?)", rows)
        return len(rows)

    def kept(self, owner: str) -> set:
        """``{(kind, position)}`` kept for ``owner``."""
        return {(k, int(p)) for k, p in self._db.run("SELECT kind, position FROM images WHERE owner = ?", (owner,))}

    def get(self, owner: str, kind: str, position: int) -> bytes | None:
        rows = self._db.run("SELECT data FROM images WHERE owner = ? AND kind = ? AND position = ?",
                            (owner, kind, int(position)))
        if not rows:
            return None
        blob = bytes(rows[0][0])
        if self._cipher is None:
            return blob
        try:
            return self._cipher.open(blob, side_aad(_AAD, owner, kind, int(position)))
        except SealBrokenError as exc:
            raise CorruptStoreError(f"image store {self.path.name!r}: the {kind} image {position} of {owner} fails "
                                    f"authentication ({exc})") from None

    def move(self, owner: str, to: str) -> int:
        """Give ``owner``'s images to ``to`` (a case's probe enrolled as a subject): re-sealed, since
        the owner is part of each image's associated data."""
        moved = {(k, p): self.get(owner, k, p) for k, p in self.kept(owner)}
        if not moved:
            return 0
        rows = []
        if self._cipher is not None:
            self._cipher.writing()
        for (kind, position), data in sorted(moved.items()):
            blob = data if self._cipher is None else self._cipher.seal(data, side_aad(_AAD, to, kind, position))
            rows.append((to, kind, position, blob))
        with self._db.transaction() as db:
            db.execute("DELETE FROM images WHERE owner IN (?, ?)", (owner, to))
            db.executemany("INSERT INTO images (owner, kind, position, data) VALUES (?, ?, ?, ?)", rows)
        return len(rows)

    def delete(self, owner: str) -> int:
        with self._db.transaction() as db:
            return db.execute("DELETE FROM images WHERE owner = ?", (owner,)).rowcount

    def purge_absent(self, enrolled) -> int:
        """Delete the images of subjects no longer enrolled (removed outside the service, by
        ``Gallery.remove`` in another process, which does not know of this store).

        ``enrolled(subject_id) -> bool``.  Returns the images deleted.  One check per subject
        that has images (run when the service opens: ~20-50 µs each from the store).
        """
        owners = [o for (o,) in self._db.run("SELECT DISTINCT owner FROM images WHERE owner LIKE 'subject:%'")]
        gone = [o for o in owners if not enrolled(o[len("subject:"):])]
        n = 0
        for i in range(0, len(gone), 500):  # SQLite's bound-parameter limit
            chunk = gone[i:i + 500]
            with self._db.transaction() as db:
                n += db.execute(f"DELETE FROM images WHERE owner IN ({','.join('?' * len(chunk))})", chunk).rowcount
        return n

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*"))
