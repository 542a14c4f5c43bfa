"""The examiner's side of a REVIEW case: what the page draws, and what an outcome does.

:func:`case_view` puts the case's stored probe beside each candidate's enrolled templates, finger
by finger: both minutiae sets, the matcher's own pairing of them and its score
(:meth:`biomatch.match.FingerprintMatcher.explain`, under the gallery's match parameters).  The
pairing drawn is the one the score rests on: the elastic stage's (``elastic_pairs``, the best
anchor's one-to-one pairing) when that stage ran, else the global stage's rigid fit
(``consistent_pairs``); ``pairing`` says which.  No pairing is invented here.

:func:`resolve_case` records an outcome; ``different_person`` then enrols the stored probe
(``accept_review``: the examiner cleared it), first, so that a crash between the two leaves a
resolved case whose retry finishes the enrolment rather than a probe lost.  What the enrolment
did is kept with the case and returned.

Images: when the service keeps them (:mod:`.images`), a side's ``image`` names where the page
fetches it (with the same key, in the header, never in the URL): the case's probe image, the
candidate's enrolled image; likewise the face images.  The page draws a finger image under the
minutiae.  Without kept images ``image`` is null and the page draws the minutiae on a blank print.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import quote

from ..errors import DuplicateSubjectError, UnknownSubjectError
from ..match import FingerprintMatcher
from ..template import POSITION_NAMES, Template
from .images import case_owner, subject_owner

__all__ = ["case_view", "resolve_case", "MAX_VIEW_CANDIDATES"]

log = logging.getLogger(__name__)

MAX_VIEW_CANDIDATES = 5  # candidates drawn per case (a case lists at most DecisionParams.max_candidates)
# One resolution at a time in a process: two examiners sending different_person at once would
# otherwise both take the "finish an interrupted resolution" path.  Across worker processes the
# queue's conditional writes keep the first answer (ReviewQueue.finish).
_RESOLVING = threading.Lock()


def _side(t: Template, image: str | None = None) -> dict:
    m = t.minutiae
    return {"width": t.width, "height": t.height, "quality": t.quality, "image": image,
            "minutiae": [[round(float(x), 1), round(float(y), 1), round(float(a), 4), int(k), int(q)]
                         for x, y, a, k, q in zip(m["x"], m["y"], m["angle"], m["kind"], m["quality"])]}


def _finger(position: int, probe: Template, enrolled: Template, match_params, images=(None, None)) -> dict:
    e = FingerprintMatcher(probe, match_params).explain(enrolled)
    pairs, pairing = e["elastic_pairs"], "elastic"
    if not len(pairs[0]):
        pairs, pairing = e["consistent_pairs"], "global"
    return {"position": position, "name": POSITION_NAMES.get(position, str(position)), "score": float(e["score"]),
            "pairing": pairing, "pairs": [[int(a), int(b)] for a, b in zip(*pairs)],
            "probe": _side(probe, images[0]), "candidate": _side(enrolled, images[1])}


def case_view(gallery, queue, case_id: str, images=None) -> dict:
    """A case with, per candidate and common finger, both templates and the matcher's pairing.

    Returns
    -------
    dict
        The case (:meth:`ReviewQueue.get`) and ``views``: per candidate (at most
        :data:`MAX_VIEW_CANDIDATES`, best first) ``subject_id``, ``score``, ``face_score``,
        ``enrolled`` (False when it was removed since) and ``fingers``: per common position
        ``position``, ``name``, ``score`` (the matcher's, now), ``pairing``, ``pairs``
        ([probe index, candidate index]), ``probe`` and ``candidate`` (``width``, ``height``,
        ``quality``, ``minutiae`` as [x, y, angle rad, kind, quality], ``image``).  ``views`` is
        empty once the case is resolved (its probe is deleted then).

    Raises
    ------
    UnknownCaseError
    """
    case = queue.get(case_id)
    probe = queue.probe(case_id)
    views = []
    if probe is not None:
        probe_kept = images.kept(case_owner(case_id)) if images is not None else set()
        for cand in case["candidates"][:MAX_VIEW_CANDIDATES]:
            sid = cand["subject_id"]
            kept = images.kept(subject_owner(sid)) if images is not None else set()
            probe_url = lambda kind, p: (f"/v1/reviews/{case_id}/images/{kind}/{p}"  # noqa: E731
                                         if (kind, p) in probe_kept else None)
            cand_url = lambda kind, p: (f"/v1/subjects/{quote(sid, safe='')}/images/{kind}/{p}"  # noqa: E731
                                        if (kind, p) in kept else None)
            view = {"subject_id": sid, "score": cand.get("score"),
                    "face_score": cand.get("face_score"), "has_probe_face": probe.face is not None,
                    "probe_face_image": probe_url("face", 0), "face_image": cand_url("face", 0),
                    "enrolled": True, "fingers": []}
            try:
                enrolled = gallery.templates(sid)
            except UnknownSubjectError:  # removed since the case was opened
                view["enrolled"] = False
                enrolled = {}
            for p in sorted(set(probe.fingers) & set(enrolled)):
                view["fingers"].append(_finger(p, probe.fingers[p], enrolled[p], gallery.match_params,
                                               (probe_url("finger", p), cand_url("finger", p))))
            views.append(view)
    return dict(case, views=views)


def resolve_case(gallery, queue, case_id: str, outcome: str, key_id: str | None, decision_body, images=None) -> dict:
    """Record an examiner's outcome; for ``different_person`` enrol the case's stored probe.

    Parameters
    ----------
    decision_body : callable
        ``DedupReport -> dict``, the API's shape of an enrolment's answer.
    images : ImageStore, optional
        The kept images: the case's are given to the subject when its probe is enrolled,
        deleted otherwise.

    Returns
    -------
    dict
        The case after resolution; ``enrolled`` True when its probe is now enrolled, False when
        the gallery refused it (``enrolment`` says why: a DUPLICATE enrolled since the case was
        opened, say), None when there was no probe to enrol (the registry re-sends the record
        with ``review_case``).

    Raises
    ------
    UnknownCaseError, InvalidInputError
    """
    with _RESOLVING:
        case = _resolve(gallery, queue, case_id, outcome, key_id, decision_body)
    if images is not None and case["outcome"] is not None:
        owner = case_owner(case_id)
        if case["enrolled"]:
            images.move(owner, subject_owner(case["subject_id"]))
        else:  # not enrolled from this case (a re-sent record brings its own images)
            images.delete(owner)
    return case


def _resolve(gallery, queue, case_id, outcome, key_id, decision_body) -> dict:
    case = queue.resolve(case_id, outcome, key_id)
    if outcome != "different_person" or not case["probe_kept"]:
        return case
    probe = queue.probe(case_id)
    if probe is None:  # finished by another worker between the two reads
        return queue.get(case_id)
    from ..dedup import Enrolment

    sid = case["subject_id"]
    # Already enrolled: a crash cut an earlier resolution short after its enrolment, or the
    # registry re-sent the record with review_case.  The answer is rebuilt as an idempotent
    # retry's is (candidates lost).
    recovered = {"subject_id": sid, "decision": None, "enrolled": True, "candidates": [], "thresholds": {},
                 "gallery_size": 0, "positions_used": [], "review_case": case_id, "recovered": True}
    if sid in gallery:
        return queue.finish(case_id, True, recovered)
    record = Enrolment(sid, probe.fingers, face=probe.face, metadata=probe.metadata)
    try:
        report = gallery.enroll(record, accept_review=True)
    except DuplicateSubjectError:  # enrolled meanwhile by another worker finishing the same case
        return queue.finish(case_id, True, recovered)
    body = decision_body(report)
    if not report.enrolled:
        log.warning("review case %s: resolved different_person, but the gallery refused the probe (%s)",
                    case_id, report.decision)
    return queue.finish(case_id, bool(report.enrolled), body)
