"""The JSON shapes of the API (pydantic models): what the OpenAPI document describes.

Requests refuse unknown fields (``extra="forbid"``), so a misspelt field is a 422 naming it
rather than silently ignored.  Responses hold ids, scores and decisions, never a template.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FingerIn", "FaceIn", "ProbeIn", "RecordIn", "EnrolIn", "IdentifyIn", "CandidateOut", "DecisionOut",
           "IdentifyOut", "VerifyOut", "SubjectOut", "RemovedOut", "ReviewOutcomeIn", "ReviewCaseOut",
           "ReviewCasesOut", "ReviewCaseViewOut", "CandidateViewOut", "FingerViewOut", "SideOut",
           "AuditEntriesOut", "AuditVerifyOut", "ErrorOut", "HealthOut"]

_B64 = "base64 (RFC 4648, standard alphabet, padded)"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FingerIn(_In):
    """One finger: an image or a minutiae template."""

    position: int = Field(ge=1, le=10, description="ISO/IEC 19794-2 finger position 1-10")
    data: str = Field(min_length=1, description=f"the file's bytes in {_B64}: an image (PNG, JPEG, JPEG 2000, "
                      "WSQ, TIFF, BMP) or a template (ISO/IEC 19794-2:2005/2011, ANSI/INCITS 378, biomatch BMT1)")
    kind: Literal["image", "template"] | None = Field(None, description="recognised from the bytes when absent")
    dpi: float | None = Field(None, ge=100, le=2000, description="the image's resolution (default: the record's)")


class FaceIn(_In):
    """A face image (JPEG, PNG, JPEG 2000); exactly one face."""

    data: str = Field(min_length=1, description=f"the image file in {_B64}")


class ProbeIn(_In):
    """What is searched: fingers and/or a face, or an ANSI/NIST-ITL transaction."""

    fingers: list[FingerIn] = Field(default_factory=list, max_length=10)
    face: FaceIn | None = None
    transaction: str | None = Field(None, min_length=1, description=f"an ANSI/NIST-ITL 1-2011 transaction in {_B64} "
                                    "(its finger images, Type-9 minutiae and first face are used)")
    dpi: float = Field(500, ge=100, le=2000, description="resolution of the finger images without their own dpi")


class RecordIn(ProbeIn):
    """A registry record: its subject id, fingers, face, metadata."""

    subject_id: str = Field(min_length=1, max_length=256)
    metadata: dict | None = Field(None, description="opaque JSON kept with the subject (at most 64 KiB)")


class EnrolIn(RecordIn):
    review_case: str | None = Field(None, max_length=64, description="a REVIEW case an examiner resolved "
                                    "different_person: the record is then enrolled despite its REVIEW decision")


class IdentifyIn(ProbeIn):
    k: int = Field(10, ge=1, description="candidates returned (at most the service's max_identify_k)")


class CandidateOut(BaseModel):
    subject_id: str
    score: float = Field(description="fused evidence in decades (-log10 of the false match rate)")
    finger_scores: dict[str, float] = Field(default_factory=dict, description="matcher score per finger position")
    face_score: float | None = None


class DecisionOut(BaseModel):
    subject_id: str
    decision: Literal["DUPLICATE", "REVIEW", "UNIQUE"] | None
    enrolled: bool
    candidates: list[CandidateOut]
    thresholds: dict = Field(default_factory=dict)
    gallery_size: int = 0
    positions_used: list[int] = Field(default_factory=list)
    review_case: str | None = Field(None, description="the queued case of a REVIEW decision")
    recovered: bool = Field(False, description="rebuilt after the first answer was lost (candidates unknown)")


class IdentifyOut(BaseModel):
    candidates: list[CandidateOut]


class VerifyOut(BaseModel):
    subject_id: str
    match: bool
    score: float
    threshold: float
    target_fmr: float
    finger_scores: dict[str, float]


class SubjectOut(BaseModel):
    subject_id: str
    positions: list[int]
    has_face: bool
    metadata: dict | None


class RemovedOut(BaseModel):
    subject_id: str
    removed: bool


class ReviewOutcomeIn(_In):
    outcome: Literal["same_person", "different_person"]


class ReviewCaseOut(BaseModel):
    case_id: str
    subject_id: str
    candidates: list[dict] = Field(description="subject_id, score, finger_scores, face_score of each candidate")
    opened_utc: float
    opened_by: str | None
    outcome: str | None
    resolved_utc: float | None
    resolved_by: str | None
    probe_kept: bool = Field(False, description="the probe's templates are kept with the case (until it is resolved)")
    enrolled: bool | None = Field(None, description="different_person: whether the probe is now enrolled (null: "
                                  "no probe was kept; the registry re-sends the record with review_case)")
    enrolment: DecisionOut | None = Field(None, description="the answer of the probe's enrolment")


class SideOut(BaseModel):
    """One template as the page draws it."""

    width: int = Field(description="pixels at 500 dpi")
    height: int
    quality: int
    minutiae: list[list[float]] = Field(description="[x, y, angle (rad, counter-clockwise, y down), kind, quality]")
    image: str | None = Field(None, description="where the kept image is fetched, with the same key (null: no "
                              "image kept; the service keeps them with --keep-images)")


class FingerViewOut(BaseModel):
    position: int
    name: str
    score: float = Field(description="the matcher's score of this finger pair")
    pairing: Literal["elastic", "global"] = Field(description="the matcher stage whose pairing is given")
    pairs: list[list[int]] = Field(description="[probe minutia index, candidate minutia index] paired by the matcher")
    probe: SideOut
    candidate: SideOut


class CandidateViewOut(BaseModel):
    subject_id: str
    score: float | None
    face_score: float | None = None
    has_probe_face: bool = False
    probe_face_image: str | None = Field(None, description="where the probe's kept face image is fetched")
    face_image: str | None = Field(None, description="where the candidate's kept face image is fetched")
    enrolled: bool = Field(description="False when the candidate was removed since the case was opened")
    fingers: list[FingerViewOut]


class ReviewCaseViewOut(ReviewCaseOut):
    views: list[CandidateViewOut] = Field(description="per candidate, the fingers both hold (empty once resolved)")


class ReviewCasesOut(BaseModel):
    cases: list[ReviewCaseOut]


class AuditEntriesOut(BaseModel):
    subject_id: str
    entries: list[dict]


class AuditVerifyOut(BaseModel):
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    line: int | None
    problem: str | None


class HealthOut(BaseModel):
    status: str


class ErrorOut(BaseModel):
    detail: str = Field(description="what is wrong")
    field: str | None = Field(None, description="the request field at fault, e.g. fingers[2].data")
    error: str = Field(description="the error's kind, e.g. InvalidInputError, unauthorized, too_large")
