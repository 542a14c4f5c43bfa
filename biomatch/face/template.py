"""The face template: an immutable L2-normalised SFace embedding with its model and quality.

Binary format (``BMF1``), little-endian::

    magic        4s   b"BMF1"
    version      u16  1
    dim          u16  embedding length (128)
    model_id     24s  ASCII, NUL padded (e.g. "sface-2021dec-int8bq")
    model_hash   16s  first 16 hex digits of the SHA-256 of the embedding model file
    params_hash  16s  hash of the FaceParams used
    quality      6 x f32  detector_score, face_width_px, eye_distance_px, roll_deg, yaw_ratio, blur_var
    embedding    dim x f32
    crc32        u32  of everything before it

Decoding validates every field and raises :class:`~biomatch.face.errors.FaceTemplateError`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, fields

import numpy as np

from .embed import EMBEDDING_DIM
from .errors import FaceTemplateError
from .quality import FaceQuality

__all__ = ["FaceTemplate", "encode", "decode"]

_MAGIC = b"BMF1"
_VERSION = 1
_HEADER = struct.Struct("<4sHH24s16s16s6f")
_QUALITY_FIELDS = [f.name for f in fields(FaceQuality)]
_NORM_TOLERANCE = 1e-3


@dataclass(frozen=True, eq=False)
class FaceTemplate:
    """An immutable face template.

    Attributes
    ----------
    embedding : ndarray, float32, shape (128,)
        Unit-norm SFace embedding (read-only).
    model_id : str
        Embedding model identifier (ASCII, at most 24 characters).
    model_hash : str
        First 16 hex digits of the model file's SHA-256; templates of different models
        are refused by :func:`~biomatch.face.match.cosine`.
    params_hash : str
        Hash of the :class:`~biomatch.face.params.FaceParams` used.
    quality : FaceQuality
        Enrolment quality figures.

    Notes
    -----
    Thread-safe (immutable). 604 bytes encoded.
    """

    embedding: np.ndarray
    model_id: str
    model_hash: str
    params_hash: str
    quality: FaceQuality

    def __post_init__(self):
        v = np.array(self.embedding, dtype=np.float32, copy=True)
        if v.shape != (EMBEDDING_DIM,):
            raise FaceTemplateError(f"embedding: expected shape ({EMBEDDING_DIM},), got {v.shape}")
        if not np.all(np.isfinite(v)) or abs(float(np.linalg.norm(v)) - 1.0) > _NORM_TOLERANCE:
            raise FaceTemplateError("embedding: expected finite values with unit L2 norm, "
                                    f"got norm {float(np.linalg.norm(v)):.4f}")
        for name, limit in (("model_id", 24), ("model_hash", 16), ("params_hash", 16)):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.isascii() or len(value) > limit:
                raise FaceTemplateError(f"{name}: expected ASCII text of at most {limit} characters, "
                                        f"got {value!r}")
        if not isinstance(self.quality, FaceQuality):
            raise FaceTemplateError(f"quality: expected FaceQuality, got {type(self.quality).__name__}")
        v.setflags(write=False)
        object.__setattr__(self, "embedding", v)

    def to_bytes(self) -> bytes:
        return encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> "FaceTemplate":
        return decode(data)


def encode(t: FaceTemplate) -> bytes:
    """Serialise a :class:`FaceTemplate` to the ``BMF1`` format."""
    q = [getattr(t.quality, n) for n in _QUALITY_FIELDS]
    body = _HEADER.pack(_MAGIC, _VERSION, EMBEDDING_DIM, t.model_id.encode(), t.model_hash.encode(),
                        t.params_hash.encode(), *q) + t.embedding.astype("<f4").tobytes()
    return body + struct.pack("<I", zlib.crc32(body))


def decode(data: bytes) -> FaceTemplate:
    """Parse and validate ``BMF1`` bytes; raises :class:`FaceTemplateError` on any inconsistency."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FaceTemplateError(f"data: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    expected = _HEADER.size + 4 * EMBEDDING_DIM + 4
    if len(data) < 4 or data[:4] != _MAGIC:
        raise FaceTemplateError(f"magic: expected {_MAGIC!r}, got {data[:4]!r}", offset=0)
    if len(data) != expected:
        raise FaceTemplateError(f"length: expected {expected} bytes, got {len(data)}", offset=min(len(data), expected))
    (crc,) = struct.unpack_from("<I", data, expected - 4)
    if zlib.crc32(data[:-4]) != crc:
        raise FaceTemplateError("crc32: checksum mismatch (corrupt template)", offset=expected - 4)
    magic, version, dim, model_id, model_hash, params_hash, *q = _HEADER.unpack_from(data)
    if version != _VERSION:
        raise FaceTemplateError(f"version: expected {_VERSION}, got {version}", offset=4)
    if dim != EMBEDDING_DIM:
        raise FaceTemplateError(f"dim: expected {EMBEDDING_DIM}, got {dim}", offset=6)
    try:
        texts = [b.rstrip(b"\0").decode("ascii") for b in (model_id, model_hash, params_hash)]
    except UnicodeDecodeError as exc:
        raise FaceTemplateError("model_id/model_hash/params_hash: expected ASCII", offset=8) from exc
    emb = np.frombuffer(data, "<f4", EMBEDDING_DIM, _HEADER.size).astype(np.float32)
    return FaceTemplate(emb, *texts, quality=FaceQuality(*map(float, q)))
