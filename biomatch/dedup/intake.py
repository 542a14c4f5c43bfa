"""What a gallery accepts: usable fingers of one extraction generation, quality gates, argument checks.

Checked before anything is searched or written, so that a refused record leaves no trace and
names the finger, the expected and the actual value.
"""

from __future__ import annotations

from typing import Mapping

from ..errors import (BiomatchError, FaceQualityError, FingerQualityError, IncompatibleTemplateError,
                      NoUsableFingerError, invalid)
from ..face import check_enrolment
from ..params import MatchParams
from ..template import GENERATED_PARAMS_HASH, Template
from .manifest import extraction_family
from .records import POSITION_NAMES, Enrolment, coerce_fingers

__all__ = ["usable", "check_quality", "check_face", "probe_fingers", "sid", "check_open_args", "each"]


def usable(fingers: Mapping[int, Template], name: str, match_params: MatchParams,
           template_params_hash: str | None, generated_background: bool = False) -> dict[int, Template]:
    """The fingers with enough minutiae, all of one extraction generation the gallery accepts
    (with ``generated_background``, generated templates too: see ``Gallery.create``).

    Raises
    ------
    NoUsableFingerError, IncompatibleTemplateError
    """
    # Empty templates (no print) carry no generation worth checking: filter first.
    need = max(match_params.min_minutiae, 1)
    out = {p: t for p, t in fingers.items() if len(t) >= need}
    if not out:
        raise NoUsableFingerError(f"{name}: expected at least one finger with >= {need} minutiae, got none "
                                  f"(positions {sorted(fingers)})")
    hashes = {t.params_hash for t in out.values()}
    if len(hashes) > 1:
        raise IncompatibleTemplateError(f"{name}: expected templates of one extraction generation, "
                                        f"got parameter hashes {sorted(hashes)}")
    want = template_params_hash
    if generated_background and hashes == {GENERATED_PARAMS_HASH}:
        return out
    if want is not None and hashes != {want} and not hashes | {want} <= extraction_family():
        raise IncompatibleTemplateError(f"{name}: expected templates with extraction parameter hash {want!r} "
                                        f"(or of its lineage, biomatch.params.EXTRACTION_LINEAGE), "
                                        f"got {next(iter(hashes))!r}")
    return out


def check_quality(fingers: dict, name: str, low: int) -> None:
    """Refuse an enrolment whose finger is below ``low`` (``DecisionParams.enrol_min_quality``)."""
    for p, t in sorted(fingers.items()):
        if int(t.quality) < low:
            raise FingerQualityError(f"{name}[{p}] ({POSITION_NAMES[p]}): print quality {int(t.quality)} is below "
                                     f"the gallery's enrolment minimum {low}; capture it again", p, int(t.quality), low)


def check_face(record: Enrolment) -> None:
    """Refuse a face that fails the enrolment gate of :func:`biomatch.face.check_enrolment`."""
    if record.face_quality is None:
        return
    failures = check_enrolment(record.face_quality)
    if failures:
        raise FaceQualityError("record.face: refused for enrolment: " + "; ".join(map(str, failures)),
                               tuple(failures), record.face_quality)


def probe_fingers(probe, dpi: float = 500) -> tuple[str, dict[int, Template]]:
    """``(subject id or "", {position: Template})`` of an Enrolment or a ``{position: image or Template}``."""
    if isinstance(probe, Enrolment):
        return probe.subject_id, probe.fingers
    if isinstance(probe, Mapping):
        return "", coerce_fingers(probe, dpi, "probe")
    raise invalid("probe", "an Enrolment or a mapping {position: image or Template}", type(probe).__name__)


def sid(subject_id) -> str:
    """``subject_id``, refused unless a str."""
    if not isinstance(subject_id, str):
        raise invalid("subject_id", "a str", type(subject_id).__name__)
    return subject_id


def check_open_args(n_threads, cache_bytes) -> None:
    """Refuse bad ``n_threads`` / ``cache_bytes`` arguments of create and open."""
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or not 1 <= n_threads <= 256:
        raise invalid("n_threads", "an int in [1, 256]", n_threads)
    if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
        raise invalid("cache_bytes", "an int >= 0", cache_bytes)


def each(records, action, progress, stop_on_error: bool) -> list:
    """Apply ``action`` to every record; a BiomatchError either stops the batch or becomes
    that record's result, so that a backlog reports exactly which items failed."""
    total = len(records) if hasattr(records, "__len__") else None
    out = []
    for i, rec in enumerate(records):
        try:
            res = action(rec)
        except BiomatchError as exc:
            if stop_on_error:
                raise
            res = exc
        out.append(res)
        if progress is not None:
            progress(i + 1, total, res)
    return out


def windowed(records, window: int, action, progress, stop_on_error: bool) -> list:
    """As :func:`each`, ``action`` taking ``window`` records at a time and returning their
    results (a BiomatchError per failed record; with ``stop_on_error`` the first one is raised
    after every result of its window is reported)."""
    total = len(records) if hasattr(records, "__len__") else None
    out: list = []
    chunk: list = []

    def flush():
        results = action(chunk)
        chunk.clear()
        for res in results:  # every result reported first: a window's records after an error may be written
            out.append(res)
            if progress is not None:
                progress(len(out), total, res)
        first = next((res for res in results if isinstance(res, BiomatchError)), None)
        if stop_on_error and first is not None:
            raise first

    for rec in records:
        chunk.append(rec)
        if len(chunk) >= window:
            flush()
    if chunk:
        flush()
    return out
