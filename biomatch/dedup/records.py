"""The enrolment record: a registry subject id, up to ten fingers, an optional face, metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import BiomatchError, invalid
from ..template import Template

__all__ = ["Enrolment", "FINGER_POSITIONS", "POSITION_NAMES", "MAX_SUBJECT_ID_CHARS", "coerce_fingers"]

FINGER_POSITIONS = tuple(range(1, 11))
"""ISO/IEC 19794-2 finger positions: 1 right thumb ... 5 right little, 6 left thumb ... 10 left little."""

POSITION_NAMES = {1: "right thumb", 2: "right index", 3: "right middle", 4: "right ring", 5: "right little",
                  6: "left thumb", 7: "left index", 8: "left middle", 9: "left ring", 10: "left little"}

MAX_SUBJECT_ID_CHARS = 256
_MAX_METADATA_BYTES = 64 * 1024


def _check_subject_id(subject_id) -> str:
    if not isinstance(subject_id, str) or not subject_id.strip() or len(subject_id) > MAX_SUBJECT_ID_CHARS \
            or any(ord(c) < 32 for c in subject_id):
        raise invalid("subject_id", f"a non-blank str of at most {MAX_SUBJECT_ID_CHARS} printable characters",
                      subject_id)
    return subject_id


def _check_position(position) -> int:
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or int(position) not in FINGER_POSITIONS:
        raise invalid("fingers", "positions that are ints in 1-10 (ISO/IEC 19794-2)", position)
    return int(position)


def coerce_fingers(fingers, dpi, name: str = "fingers") -> dict[int, Template]:
    """Validate ``{position: image array | image path | Template}`` and extract the images.

    Returns
    -------
    dict int -> Template, sorted by position
    """
    if not isinstance(fingers, Mapping):
        raise invalid(name, "a mapping {position 1-10: image array, image path or Template}", type(fingers).__name__)
    if not fingers:
        raise invalid(name, "at least one finger", "{}")
    out: dict[int, Template] = {}
    for position, value in sorted(fingers.items(), key=lambda kv: repr(kv[0])):
        p = _check_position(position)
        if p in out:
            raise invalid(name, "each position once", position)
        if isinstance(value, Template):
            out[p] = value
        elif isinstance(value, (np.ndarray, str, Path)):
            from ..extract import extract

            out[p] = extract(value, dpi=dpi)
        else:
            raise invalid(f"{name}[{p}]", "an image array, an image path or a Template", type(value).__name__)
    return dict(sorted(out.items()))


class Enrolment:
    """One registry record: subject id, up to ten fingers, optional face, opaque metadata.

    Parameters
    ----------
    subject_id : str
        The registry's id (non-blank, at most 256 printable characters).
    fingers : mapping int -> ndarray | str | Path | Template
        Keyed by ISO finger position 1-10.  Images are extracted here, at ``dpi``.
    face : ndarray, optional
        A face embedding (1-d finite float vector).  Stored, not yet used in fusion (the face
        issue will add scoring); face images are refused until then.
    dpi : float
        Resolution of the finger images (100-2000).  Ignored for templates.
    metadata : mapping, optional
        Opaque JSON-serialisable data kept with the subject (at most 64 KiB as JSON).

    Notes
    -----
    Immutable after construction and thread-safe.  Memory: the templates (~0.6 KB per finger).
    """

    __slots__ = ("subject_id", "fingers", "face", "dpi", "metadata")

    def __init__(self, subject_id: str, fingers: Mapping, face=None, dpi: float = 500, metadata=None):
        object.__setattr__(self, "subject_id", _check_subject_id(subject_id))
        if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)) \
                or not np.isfinite(dpi) or not 100 <= dpi <= 2000:
            raise invalid("dpi", "a number in [100, 2000]", dpi)
        object.__setattr__(self, "dpi", float(dpi))
        object.__setattr__(self, "fingers", coerce_fingers(fingers, float(dpi)))
        if face is not None:
            arr = np.asarray(face) if isinstance(face, np.ndarray) else None
            if arr is None or arr.ndim != 1 or arr.dtype.kind != "f" or not 1 <= arr.size <= 4096 \
                    or not np.all(np.isfinite(arr)):
                raise invalid("face", "None or a 1-d finite float embedding (face images need the face module)",
                              type(face).__name__ if arr is None else f"array {arr.dtype} {arr.shape}")
            face = arr.astype(np.float32)
            face.flags.writeable = False
        object.__setattr__(self, "face", face)
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise invalid("metadata", "None or a JSON-serialisable mapping", type(metadata).__name__)
            try:
                text = json.dumps(metadata, sort_keys=True, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise invalid("metadata", "a JSON-serialisable mapping", str(exc)) from None
            if len(text.encode()) > _MAX_METADATA_BYTES:
                raise invalid("metadata", f"at most {_MAX_METADATA_BYTES} bytes as JSON", len(text.encode()))
            metadata = json.loads(text)
        object.__setattr__(self, "metadata", metadata)

    def __setattr__(self, name, value):
        raise BiomatchError("Enrolment is immutable")

    def __repr__(self) -> str:  # never print minutiae or metadata: personal data
        return (f"Enrolment(subject_id={self.subject_id!r}, positions={list(self.fingers)}, "
                f"face={'yes' if self.face is not None else 'no'})")

    @property
    def metadata_json(self) -> str | None:
        return None if self.metadata is None else json.dumps(self.metadata, sort_keys=True)
