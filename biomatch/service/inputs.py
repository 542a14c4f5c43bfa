"""Request payloads -> templates: what a registry sends, decoded by biomatch's own readers.

Two encodings of one request, checked by the same pydantic model (:mod:`.schemas`):

- ``application/json``: the files in base64 (``fingers[i].data``, ``face.data``, ``transaction``);
- ``multipart/form-data``: text fields ``subject_id``, ``dpi``, ``metadata`` (JSON text),
  ``review_case``, ``k``; files ``finger_1`` ... ``finger_10`` (with optional ``dpi_N`` and
  ``kind_N`` fields), ``face`` and ``transaction``.

Each finger's bytes are a template when they start like one (ISO/IEC 19794-2 and ANSI 378
``FMR\\0``, biomatch ``BMT1``), else an image.  Images go through
:func:`biomatch.imaging.decode_bytes` (the decompression-bomb checks of every image read; WSQ
in its isolated decoder) and :func:`biomatch.extract.extract`; templates through
:func:`biomatch.formats.load_views` (the view of the stated position, or the record's only
view); a transaction through :func:`biomatch.formats.an2k.read_enrolment`; a face through
:func:`biomatch.face.encode_face`.  Every failure names the request field
(``fingers[2].data``), so that the caller can fix it.

The ``gallery enroll`` command reads paths (:mod:`biomatch.cli.inputs`); the service reads bytes,
so the two share biomatch's readers and the Enrolment's checks, not their file handling.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from ..errors import BiomatchError
from .errors import ServiceError
from .schemas import EnrolIn, IdentifyIn, ProbeIn, RecordIn

__all__ = ["Parsed", "parse_json", "parse_form", "fingerprint", "to_enrolment", "to_probe", "validation_error"]

_TEMPLATE_MAGICS = (b"FMR\0", b"BMT1")
_FORM_TEXT = ("subject_id", "dpi", "metadata", "review_case", "k")


@dataclass
class Parsed:
    """A validated request and the raw bytes of its files (aligned with ``model.fingers``)."""

    model: BaseModel
    finger_bytes: list = field(default_factory=list)
    face_bytes: bytes | None = None
    transaction_bytes: bytes | None = None
    # filled by to_enrolment / to_probe, for a service that keeps images: per finger position
    # given as an image, the image file's bytes as sent, or (from a transaction) its decoded pixels
    finger_images: dict = field(default_factory=dict, repr=False)


def _loc(loc) -> str:
    """``("fingers", 2, "data")`` -> ``"fingers[2].data"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def validation_error(exc: ValidationError, prefix: tuple = ()) -> ServiceError:
    """A 422 naming the first invalid field of a pydantic error."""
    err = exc.errors()[0]
    where = _loc(prefix + tuple(p for p in err["loc"] if p != "body"))
    extra = f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return ServiceError(422, f"{where}: {err['msg']}{extra}", where, "validation_error")


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(422, f"{where}: expected base64 (standard alphabet, padded), got {len(text)} characters "
                                "that are not", where, "validation_error") from None


def parse_json(body: bytes, model: type[BaseModel]) -> Parsed:
    """Validate a JSON request body against ``model`` and decode its base64 files."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ServiceError(422, f"body: expected a JSON object, got unparsable JSON ({exc})", "body",
                           "validation_error") from None
    if not isinstance(doc, dict):
        raise ServiceError(422, f"body: expected a JSON object, got {type(doc).__name__}", "body", "validation_error")
    try:
        m = model.model_validate(doc)
    except ValidationError as exc:
        raise validation_error(exc) from None
    return Parsed(m, [_b64(f.data, f"fingers[{i}].data") for i, f in enumerate(m.fingers)],
                  None if m.face is None else _b64(m.face.data, "face.data"),
                  None if m.transaction is None else _b64(m.transaction, "transaction"))


async def parse_form(form, model: type[BaseModel]) -> Parsed:
    """Validate a multipart form (Starlette ``FormData``) against ``model``."""
    doc: dict = {}
    fingers: dict[int, dict] = {}
    finger_bytes: dict[int, bytes] = {}
    face_bytes = transaction_bytes = None
    for name, value in form.multi_items():
        is_file = hasattr(value, "read")
        base, _, num = name.rpartition("_")
        if name in _FORM_TEXT and not is_file:
            if name == "metadata":
                try:
                    doc[name] = json.loads(value)
                except ValueError:
                    raise ServiceError(422, "metadata: expected a JSON object as text", "metadata",
                                       "validation_error") from None
            else:
                doc[name] = value
        elif base in ("finger", "dpi", "kind") and num.isdigit() and 1 <= int(num) <= 10:
            p = int(num)
            entry = fingers.setdefault(p, {"position": p, "data": "-"})
            if base == "finger":
                if not is_file:
                    raise ServiceError(422, f"{name}: expected a file part", name, "validation_error")
                finger_bytes[p] = await value.read()
            else:
                entry[base] = value
        elif name in ("face", "transaction") and is_file:
            data = await value.read()
            if name == "face":
                face_bytes, doc["face"] = data, {"data": "-"}
            else:
                transaction_bytes, doc["transaction"] = data, "-"
        else:
            # A part without a name is the body's fault; a long or odd name is cut (it reaches the audit log).
            where = name[:64] if name and name.isprintable() else "body"
            what = f"the part {name[:64]!r}" if where == "body" else "it"
            raise ServiceError(422, f"{where}: {what} is not a field of this request (expected "
                                    f"{', '.join(_FORM_TEXT)}, finger_1..finger_10 [dpi_N, kind_N], face, transaction)",
                               where, "validation_error")
    missing = sorted(set(fingers) - set(finger_bytes))
    if missing:
        raise ServiceError(422, f"finger_{missing[0]}: dpi_/kind_ given without the file", f"finger_{missing[0]}",
                           "validation_error")
    order = sorted(fingers)
    doc["fingers"] = [fingers[p] for p in order]
    try:
        m = model.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        if len(loc) >= 2 and loc[0] == "fingers" and isinstance(loc[1], int):  # name the form part
            p = order[loc[1]]
            name = {"data": f"finger_{p}", "dpi": f"dpi_{p}", "kind": f"kind_{p}"}.get(loc[2] if len(loc) > 2 else "",
                                                                                       f"finger_{p}")
            raise ServiceError(422, f"{name}: {err['msg']}", name, "validation_error") from None
        raise validation_error(exc) from None
    for p in order:
        if not finger_bytes[p]:
            raise ServiceError(422, f"finger_{p}: empty file", f"finger_{p}", "validation_error")
    return Parsed(m, [finger_bytes[p] for p in order], face_bytes, transaction_bytes)


def fingerprint(parsed: Parsed) -> str:
    """SHA-256 of what the request asks, whatever its encoding (JSON or multipart, any boundary)."""
    doc = parsed.model.model_dump(mode="json")
    for f in doc.get("fingers", ()):
        f.pop("data", None)
    doc.pop("face", None)
    doc.pop("transaction", None)
    h = hashlib.sha256(json.dumps(doc, sort_keys=True).encode())
    for data in [*parsed.finger_bytes, parsed.face_bytes, parsed.transaction_bytes]:
        h.update(b"\0" if data is None else hashlib.sha256(data).digest())
    return h.hexdigest()


def _field_error(exc: BiomatchError, where: str) -> BiomatchError:
    """The same error type, its message prefixed with the request field."""
    text = str(exc)
    if text.startswith(where):
        return exc
    try:
        out = type(exc)(f"{where}: {text}")
    except TypeError:
        out = BiomatchError(f"{where}: {text}")
    return out


def _finger(data: bytes, kind: str | None, position: int, dpi: float, where: str, images: dict):
    from ..extract import extract
    from ..formats import load_views
    from ..imaging import decode_bytes

    try:
        if kind == "template" or (kind is None and data[:4] in _TEMPLATE_MAGICS):
            views = load_views(data)
            chosen = [v for v in views if v.position == position] or (views if len(views) == 1 else [])
            if not chosen:
                raise ServiceError(400, f"{where}: the template record holds {len(views)} views and none of "
                                        f"finger position {position}", where, "FormatError")
            return chosen[0].template
        template = extract(decode_bytes(data, where, mode="grey8"), dpi=dpi)
        images[position] = data
        return template
    except ServiceError:
        raise
    except BiomatchError as exc:
        raise _field_error(exc, where) from None


def _fingers(parsed: Parsed) -> dict:
    m = parsed.model
    if m.transaction is not None and m.fingers:
        raise ServiceError(422, "fingers: give fingers or a transaction, not both", "fingers", "validation_error")
    if parsed.transaction_bytes is not None:
        return _from_transaction(parsed)
    out = {}
    for i, (f, data) in enumerate(zip(m.fingers, parsed.finger_bytes)):
        if f.position in out:
            raise ServiceError(422, f"fingers[{i}].position: position {f.position} given twice",
                               f"fingers[{i}].position", "validation_error")
        out[f.position] = _finger(data, f.kind, f.position, f.dpi or m.dpi, f"fingers[{i}].data",
                                  parsed.finger_images)
    if not out:
        raise ServiceError(422, "fingers: expected at least one finger (or a transaction)", "fingers",
                           "validation_error")
    return out


def _from_transaction(parsed: Parsed) -> dict:
    from ..extract import extract
    from ..extract.slap import SLAP_OF_FGP
    from ..formats.an2k import read_enrolment

    try:
        t = read_enrolment(parsed.transaction_bytes)
        if any(img.position in SLAP_OF_FGP for img in t.finger_images):
            out = _from_tenprint(parsed, t)  # the intake decides every position (missing ones too)
        else:
            out = {}
            for p, img in t.fingers.items():
                if 1 <= p <= 10 and img.pixels is not None:
                    out[p] = extract(img.pixels, dpi=img.ppi or parsed.model.dpi)
                    parsed.finger_images[p] = img.pixels
            out.update({p: tpl for p, tpl in t.templates.items() if 1 <= p <= 10 and p not in out})
    except BiomatchError as exc:
        raise _field_error(exc, "transaction") from None
    if not out:
        raise ServiceError(400, "transaction: no finger image or minutiae of positions 1-10 in it", "transaction",
                           "FormatError")
    if parsed.face_bytes is None and t.faces:
        parsed.face_bytes = t.faces[0].data
    return out


def _from_tenprint(parsed: Parsed, t) -> dict:
    """A ten-print capture (slaps, with or without rolled prints): the intake of
    :func:`biomatch.dedup.tenprint.read_tenprint` -- slaps segmented, rolled prints checked against
    their segments (a failed sequence check refuses the request: nothing enrolled or searched),
    declared missing fingers left out -- the same as ``biomatch gallery enroll REGISTRY card.an2k``."""
    from ..dedup.tenprint import ROLLED_IMPRESSIONS, read_tenprint

    intake = read_tenprint(t, subject_id="transaction")
    out = dict(intake.enrolment.fingers)
    # kept images (serve --keep-images): the image each template came from
    crops = {f.position: f.image for seg in intake.segments.values() for f in seg.fingers}
    for img in t.finger_images:
        kind = "rolled" if img.impression_type in ROLLED_IMPRESSIONS else "plain"
        if img.pixels is not None and intake.sources.get(img.position) == kind:
            parsed.finger_images.setdefault(img.position, img.pixels)
    for p, source in intake.sources.items():
        if source == "slap" and p in crops:
            parsed.finger_images[p] = crops[p]
    return out


def _face(parsed: Parsed):
    if parsed.face_bytes is None:
        return None
    from ..face import encode_face

    try:
        return encode_face(parsed.face_bytes)
    except BiomatchError as exc:
        raise _field_error(exc, "face.data") from None


def to_enrolment(parsed: Parsed):
    """The :class:`~biomatch.dedup.Enrolment` of a record request (extraction happens here)."""
    from ..dedup import Enrolment

    from ..dedup.records import _check_subject_id  # the Enrolment's id rule (private there, as for the CLI)

    m = parsed.model
    if not isinstance(m, RecordIn):
        raise TypeError("to_enrolment needs a RecordIn")
    _check_subject_id(m.subject_id)  # before any image is decoded: a bad id costs nothing
    fingers = _fingers(parsed)
    return Enrolment(m.subject_id, fingers, face=_face(parsed), dpi=m.dpi, metadata=m.metadata)


def to_probe(parsed: Parsed):
    """The probe of an identify or verify request: ``{position: Template}``, or an Enrolment
    when it has a face (the gallery searches faces of records only)."""
    fingers = _fingers(parsed)
    face = _face(parsed)
    if face is None:
        return fingers
    from ..dedup import Enrolment

    return Enrolment("probe", fingers, face=face)


MODELS = {"enrol": EnrolIn, "deduplicate": RecordIn, "identify": IdentifyIn, "verify": ProbeIn}
