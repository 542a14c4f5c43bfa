"""The enrolment record: a registry subject id, up to ten fingers, an optional face, metadata."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import BiomatchError, IncompatibleTemplateError, InvalidInputError, invalid
from ..template import FINGER_POSITIONS, POSITION_NAMES, Template

__all__ = ["Enrolment", "FINGER_POSITIONS", "POSITION_NAMES", "MAX_SUBJECT_ID_CHARS", "coerce_fingers",
           "printable_id", "escape_unprintable"]

MAX_SUBJECT_ID_CHARS = 256
_MAX_METADATA_BYTES = 64 * 1024


# Unicode categories refused in subject ids: Cc controls (C0, DEL, C1: terminal escapes), Cf format
# characters (bidi overrides and isolates that reorder what a reader sees, zero-width characters
# and the BOM that hide text, tag characters), Zl/Zp line and paragraph separators, Cs lone
# surrogates, Cn unassigned code points and noncharacters (by this Python's Unicode database).
# Letters, marks, digits, punctuation, symbols, spaces and private-use characters are kept.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"})


def _unsafe_char(text: str) -> tuple[int, str] | None:
    """``(index, category)`` of the first character of ``text`` refused in an id, or None."""
    if text.isprintable():  # fast path: isprintable() is False for every refused category
        return None
    for i, c in enumerate(text):
        cat = unicodedata.category(c)
        if cat in _UNSAFE_CATEGORIES:
            return i, cat
    return None


def escape_unprintable(text: str, backslash: bool = False) -> str:
    """``text`` with every non-printable character written as a Python escape (``\\x1b``,
    ``\\u202e``), and backslashes doubled when ``backslash``; printable text is unchanged."""
    if text.isprintable() and not (backslash and "\\" in text):
        return text
    out = []
    for c in text:
        if c == "\\" and backslash:
            out.append("\\\\")
        elif c.isprintable():
            out.append(c)
        else:
            o = ord(c)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
    return "".join(out)


def printable_id(subject_id: str) -> str:
    """A subject id as safe to print on a terminal or in a tab-separated line.

    Characters that are not printable (controls, bidi and zero-width format characters,
    separators, tabs, non-ASCII spaces, surrogates, unassigned) are written as Python escapes
    (``\\x1b``, ``\\u202e``) and backslashes are doubled, so that an id stored before ids were
    checked cannot move the cursor, recolour the terminal or reorder the line, and two
    different ids never print the same.  Ordinary ids (``"José Ñúñez"``, ``"李小龍"``) are
    returned unchanged.
    """
    return escape_unprintable(str(subject_id), backslash=True)


def _check_subject_id(subject_id) -> str:
    """Return ``subject_id`` unchanged if it is a safe id; never normalises (that would change ids)."""
    expected = f"a non-blank str of at most {MAX_SUBJECT_ID_CHARS} printable characters"
    if not isinstance(subject_id, str) or not subject_id.strip() or len(subject_id) > MAX_SUBJECT_ID_CHARS:
        raise invalid("subject_id", expected, subject_id)
    bad = _unsafe_char(subject_id)
    if bad is not None:
        i, cat = bad
        c = subject_id[i]
        name = unicodedata.name(c, "") or {"Cc": "control", "Cs": "surrogate", "Cn": "unassigned"}.get(cat, "")
        shown = printable_id(subject_id)
        if len(shown) > 120:
            shown = shown[:117] + "..."
        raise InvalidInputError(
            f"subject_id: expected {expected} (no control, format/bidi, line-separator, surrogate or "
            f"unassigned characters), got '{shown}' with U+{ord(c):04X} {name} (category {cat}) at index {i}")
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


def coerce_face(face) -> tuple:
    """``(unit float32 embedding (128,) read-only, FaceQuality or None)`` of an Enrolment's face."""
    from ..face import encode_face
    from ..face.nets import MODEL_ID
    from ..face.template import EMBEDDING_DIM, FaceTemplate

    if face is None:
        return None, None
    if isinstance(face, np.ndarray) and face.ndim == 1:
        if face.dtype.kind != "f" or face.size != EMBEDDING_DIM or not np.all(np.isfinite(face)):
            raise invalid("face", f"a finite float embedding of shape ({EMBEDDING_DIM},)",
                          f"array {face.dtype} {face.shape}")
        norm = float(np.linalg.norm(face.astype(np.float64)))
        if norm == 0.0:
            raise invalid("face", "a non-zero embedding", "all zeros")
        emb, quality = (face.astype(np.float64) / norm).astype(np.float32), None
    elif isinstance(face, FaceTemplate):
        if face.model_id != MODEL_ID:
            raise IncompatibleTemplateError(f"face: expected a template of model {MODEL_ID!r}, "
                                            f"got {face.model_id!r}")
        emb, quality = face.embedding.copy(), face.quality
    elif isinstance(face, (np.ndarray, str, Path, bytes, bytearray)):
        t = encode_face(face)
        emb, quality = t.embedding.copy(), t.quality
    else:
        raise invalid("face", "None, a FaceTemplate, a 128-d embedding or a face image (array, path, bytes)",
                      type(face).__name__)
    emb.flags.writeable = False
    return emb, quality


class Enrolment:
    """One registry record: subject id, up to ten fingers, optional face, opaque metadata.

    Parameters
    ----------
    subject_id : str
        The registry's id (non-blank, at most 256 printable characters: no control, bidi or
        zero-width format, line-separator, surrogate or unassigned characters; kept as given, never
        normalised).
    fingers : mapping int -> ndarray | str | Path | Template
        Keyed by ISO finger position 1-10.  Images are extracted here, at ``dpi``.
    face : FaceTemplate | ndarray | str | Path | bytes, optional
        The face: a :class:`~biomatch.face.FaceTemplate` of the current model, a 128-d
        float embedding of that model (L2-normalised here), or an image (array, path or
        encoded bytes) encoded here with :func:`biomatch.face.encode_face` (exactly one face;
        :class:`~biomatch.errors.NoFaceError` / ``MultipleFacesError`` / ``FaceImageError``
        otherwise).  Templates and images carry the face quality that
        :meth:`Gallery.enroll` checks against the enrolment gate.
    dpi : float
        Resolution of the finger images (100-2000).  Ignored for templates.
    metadata : mapping, optional
        Opaque JSON-serialisable data kept with the subject (at most 64 KiB as JSON).

    Notes
    -----
    Immutable after construction and thread-safe.  Memory: the templates (~0.6 KB per finger).
    """

    __slots__ = ("subject_id", "fingers", "face", "face_quality", "dpi", "metadata")

    def __init__(self, subject_id: str, fingers: Mapping, face=None, dpi: float = 500, metadata=None):
        object.__setattr__(self, "subject_id", _check_subject_id(subject_id))
        if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)) \
                or not np.isfinite(dpi) or not 100 <= dpi <= 2000:
            raise invalid("dpi", "a number in [100, 2000]", dpi)
        object.__setattr__(self, "dpi", float(dpi))
        object.__setattr__(self, "fingers", coerce_fingers(fingers, float(dpi)))
        face, quality = coerce_face(face)
        object.__setattr__(self, "face", face)
        object.__setattr__(self, "face_quality", quality)
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
