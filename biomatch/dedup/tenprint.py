"""A ten-print transaction (ANSI/NIST-ITL) -> one checked :class:`Enrolment`, step by step.

Steps, each reported (:class:`Step`) whatever its outcome::

    read        the records (biomatch.formats.an2k.read_enrolment): lengths checked, every image
                decoded to the size its record states; amputated / unable-to-print fingers from
                Type-14 AMP (14.018); Type-4 has no such field, so a finger missing there is
                simply absent
    segment     each slap (FGP 13 right four, 14 left four, 15 both thumbs) cut into fingertips
                (biomatch.extract.slap); the fingers it declares (its SEG 14.021 positions, else
                its positions less the amputated ones) must all be found
    extract     a template per rolled print, plain print and slap fingertip
    sequence    rolled prints against the slap fingertips (and single plain thumbs, FGP 11/12),
                biomatch.decide.sequence: swapped fingers or hands refuse the transaction
                (SequenceCheckError, naming the fingers and the suggested order) unless forced
    quality     each enrolled finger's print quality (the gallery's own minimum is applied by
                Gallery.enroll, which refuses the whole record)

What is enrolled per position: the rolled print when there is one (the largest area), else a
plain print, else the slap's fingertip.  Missing fingers are left out -- no template, no
evidence: fusion (biomatch.decide.fusion) counts only the positions both sides hold, so an
amputated finger is never a mismatch -- and listed in the record's metadata
(``{"tenprint": {"missing": {"5": "XX"}, "sources": {...}, "sequence": ...}}``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import InvalidInputError, SequenceCheckError, TransactionError, invalid
from ..template import POSITION_NAMES
from .records import Enrolment, _check_subject_id

__all__ = ["Step", "TenprintIntake", "read_tenprint", "ROLLED_IMPRESSIONS", "PLAIN_IMPRESSIONS"]

ROLLED_IMPRESSIONS = (1, 3)  # live-scan rolled, non-live rolled
PLAIN_IMPRESSIONS = (0, 2)  # live-scan plain, non-live plain
_PLAIN_THUMB = {11: 1, 12: 6}  # plain right / left thumb (single-thumb records of a 4-4-2 capture)


@dataclass(frozen=True)
class Step:
    """One step of the intake: its name, whether it passed, and what it found (one line)."""

    name: str
    ok: bool
    text: str

    def __str__(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'FAILED'}: {self.text}"


@dataclass(frozen=True)
class TenprintIntake:
    """A transaction read, segmented, extracted and sequence-checked.

    Attributes
    ----------
    enrolment : Enrolment
        What to enrol (templates only; missing fingers absent).
    steps : tuple of Step
    missing : dict
        Position -> ``"XX"`` / ``"UP"`` (declared) or ``"not found"`` (a slap finger not found
        and not declared).
    sources : dict
        Position -> ``"rolled"``, ``"plain"`` or ``"slap"``: where the enrolled template comes from.
    sequence : SequenceCheck or None
        None when the transaction has no rolled prints or no slaps.
    segments : dict
        Slap kind -> SlapSegmentation.
    """

    enrolment: Enrolment
    steps: tuple
    missing: dict
    sources: dict
    sequence: object = None
    segments: dict = field(default_factory=dict)


def read_tenprint(source, subject_id: str | None = None, *, force: bool = False, reorder: bool = False,
                  sequence_params=None, steps_out: list | None = None) -> TenprintIntake:
    """Read a ten-print transaction into a checked enrolment.

    Parameters
    ----------
    source : bytes, path or biomatch.formats.an2k.Enrolment
        The ANSI/NIST-ITL transaction, or one already read by
        :func:`biomatch.formats.an2k.read_enrolment` (images decoded), so that a caller that
        looked into it does not parse and decode it twice.
    subject_id : str, optional
        The registry's id; default the transaction control number (1.009), else the file's stem.
    force : bool
        Enrol in the claimed order even when the sequence check fails (reported as a failed step).
    reorder : bool
        When the sequence check fails, enrol the rolled prints at the positions it suggests
        (reported as a failed step, then the order used).
    sequence_params : SequenceParams, optional
    steps_out : list, optional
        Receives each :class:`Step` as it completes (so that a caller can report the steps done
        before an error).

    Raises
    ------
    FormatError
        Corrupt structure, wrong lengths, an image that does not decode to its stated size.
    TransactionError
        A slap showing fewer fingers than it declares; no finger image at all.
    SequenceCheckError
        Rolled prints at the wrong positions (unless ``force``).
    NotASlapError
        A slap record whose image is not a slap.
    """
    from ..decide.sequence import SequenceParams, check_sequence
    from ..extract import extract
    from ..extract.slap import SLAP_OF_FGP, SLAPS, segment_slap
    from ..formats.an2k import Enrolment as Transaction
    from ..formats.an2k import read_enrolment

    steps = steps_out if steps_out is not None else []
    sp = SequenceParams() if sequence_params is None else sequence_params
    tx = source if isinstance(source, Transaction) else read_enrolment(source)
    missing = dict(tx.missing)
    slaps, rolled, plain = [], {}, {}
    for i, img in enumerate(tx.finger_images):
        where = _where(i, img)
        if img.ppi is None:
            raise TransactionError(f"{where}: no resolution (ISR/NSR or SLC/THPS missing)")
        if img.position in SLAP_OF_FGP:
            slaps.append((where, img))
        elif img.position in _PLAIN_THUMB:
            plain.setdefault(_PLAIN_THUMB[img.position], (where, img))
        elif 1 <= img.position <= 10 and img.impression_type in ROLLED_IMPRESSIONS:
            rolled.setdefault(img.position, (where, img))
        elif 1 <= img.position <= 10:
            plain.setdefault(img.position, (where, img))
    if not (slaps or rolled or plain):
        raise TransactionError("transaction: expected finger images (rolled FGP 1-10, slaps FGP 13/14/15, plain "
                               f"thumbs 11/12), got positions {sorted(i.position for i in tx.finger_images)}")
    # a rolled print at a position declared missing: a swap (the operator rolled another finger in
    # that box) or a contradiction; the sequence check below tells which, if there are slaps
    both = sorted(p for p in rolled if p in missing)
    both_text = f"fingers {both} are rolled and declared {'/'.join(missing[p] for p in both)} (AMP 14.018) at once"
    if both and not slaps:
        raise TransactionError(f"transaction: {both_text}, and no slap to tell which is right")
    steps.append(Step("read", True, f"{len(tx.finger_images)} finger records: {len(rolled)} rolled, "
                                    f"{len(slaps)} slaps, {len(plain)} plain; declared missing "
                                    f"{_positions(missing) or 'none'}" + (f"; {both_text}" if both else "")))

    # segment
    segments, slap_crops = {}, {}
    for where, img in slaps:
        kind = SLAP_OF_FGP[img.position]
        # the record's amputation codes are its word on which fingers the slap cannot show: the
        # prints are placed among the others (else two missing neighbours can shift them)
        seg = segment_slap(img.pixels, img.ppi, kind, quality=False,
                           absent=[p for p in SLAPS[kind][1] if p in missing])
        segments[kind] = seg
        if img.segments:
            declared = sorted({s[0] for s in img.segments})
        else:
            declared = sorted(p for p in SLAPS[kind][1] if p not in missing)
        found = sorted(f.position for f in seg.fingers)
        lost = [p for p in declared if p not in found]
        if lost:
            text = (f"{where}: declares fingers {declared}, the image shows {found}; "
                    f"{lost} not found (capture again, or declare them XX/UP in 14.018)")
            steps.append(Step("segment", False, text))
            raise TransactionError(text)
        for f in seg.fingers:
            if f.position in missing:
                continue  # found where the record says amputated: the record's word stands
            slap_crops.setdefault(f.position, (f, img.ppi))
        for p in seg.missing:
            if p not in missing and p not in declared:
                missing[p] = "not found"
        steps.append(Step("segment", True, f"{kind} (FGP {img.position}): fingers {found or 'none'}"
                                           + (f", missing {list(seg.missing)}" if seg.missing else "")))

    # extract
    rolled_t = {p: extract(img.pixels, img.ppi) for p, (_, img) in sorted(rolled.items())}
    plain_t = {p: extract(img.pixels, img.ppi) for p, (_, img) in sorted(plain.items())}
    slap_t = {p: extract(f.image, ppi) for p, (f, ppi) in sorted(slap_crops.items())}
    steps.append(Step("extract", True, f"templates: {len(rolled_t)} rolled, {len(plain_t)} plain, "
                                       f"{len(slap_t)} slap fingertips"))

    # sequence
    reference = {**slap_t, **{p: t for p, t in plain_t.items() if p in _PLAIN_THUMB.values() and p not in slap_t}}
    check = None
    if rolled_t and reference:
        check = check_sequence(rolled_t, reference, sp)
        if not check.ok and not (force or reorder):
            steps.append(Step("sequence", False, check.describe()))
            raise SequenceCheckError(check.describe() + "; nothing enrolled (--reorder enrols in the suggested "
                                     "order, --force as claimed)", check.swapped, check.suggested)
        how = ""
        if not check.ok and reorder:
            moved = {b: rolled_t[a] for a, b in check.suggested.items()}
            rolled_t = {**{p: t for p, t in rolled_t.items() if p not in check.suggested}, **moved}
            how = "; REORDERED: enrolled in the suggested order"
        elif not check.ok:
            how = "; FORCED: enrolled as claimed"
        steps.append(Step("sequence", check.ok, check.describe() + how))
    else:
        steps.append(Step("sequence", True, "skipped: " + ("no rolled prints" if not rolled_t else "no slaps")))
    unexplained = sorted(p for p in rolled_t if p in missing and missing[p] != "not found")
    if unexplained and not force:
        raise TransactionError(f"transaction: fingers {unexplained} are rolled and declared "
                               f"{'/'.join(missing[p] for p in unexplained)} (AMP 14.018) at once, and the "
                               "sequence check does not move them (--force enrols without them)")

    # choose per position, then quality
    fingers, sources = {}, {}
    for p in range(1, 11):
        if p in missing and missing[p] != "not found":
            continue
        for name, pool in (("rolled", rolled_t), ("plain", plain_t), ("slap", slap_t)):
            if p in pool:
                fingers[p], sources[p] = pool[p], name
                break
    if not fingers:
        raise TransactionError("transaction: no finger left to enrol (all missing or not found)")
    qualities = ", ".join(f"{p} {int(t.quality)}" for p, t in sorted(fingers.items()))
    low = min(int(t.quality) for t in fingers.values())
    steps.append(Step("quality", True, f"print quality by position: {qualities} (lowest {low})"))

    sid = _subject_id(subject_id, tx, source)
    meta = {"tenprint": {"missing": {str(p): c for p, c in sorted(missing.items())},
                         "sources": {str(p): s for p, s in sorted(sources.items())},
                         "sequence": None if check is None else ("passed" if check.ok else
                                                                 "reordered" if reorder else "forced")}}
    enrolment = Enrolment(sid, fingers, metadata=meta)
    return TenprintIntake(enrolment, tuple(steps), missing, sources, check, segments)


def _where(i: int, img) -> str:
    return f"record {i + 1} (Type-{img.record_type}, IDC {img.idc}, FGP {img.position})"


def _positions(missing: dict) -> str:
    return ", ".join(f"{p} {POSITION_NAMES.get(p, '')} {c}".replace("  ", " ") for p, c in sorted(missing.items()))


def _subject_id(subject_id, tx, source) -> str:
    from pathlib import Path

    if subject_id is not None:
        if not isinstance(subject_id, str):
            raise invalid("subject_id", "a str", type(subject_id).__name__)
        return subject_id
    tcn = tx.text.get(1, {}).get(9, "").strip()
    if tcn:
        try:
            return _check_subject_id(tcn)
        except InvalidInputError:
            pass
    if isinstance(source, (str, Path)):
        return Path(source).stem
    raise invalid("subject_id", "a subject id (the transaction has no usable TCN, 1.009)", None)
