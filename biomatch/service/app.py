"""The HTTP API (FastAPI): routes only; each one checks its role, decodes, calls the gallery.

==========================================  ==========================  ===============================
route                                       role                        does
==========================================  ==========================  ===============================
``POST /v1/enrol``                          enrol                       dedup then insert (Idempotency-Key)
``POST /v1/deduplicate``                    search                      dedup, read only
``POST /v1/identify``                       search                      the k best subjects
``POST /v1/subjects/{id}/verify``           search                      1:1 against an enrolled subject
``GET /v1/subjects/{id}``                   search, adjudicate, admin   positions, face held, metadata
``DELETE /v1/subjects/{id}``                admin                       remove a subject
``GET /v1/stats``                           search, admin               counts, memory, thresholds
``GET /v1/reviews``                         adjudicate                  the REVIEW queue
``GET /v1/reviews/{case}``                  adjudicate                  a case, probe beside candidates
``POST /v1/reviews/{case}/outcome``         adjudicate                  same_person / different_person
``GET /v1/audit/subjects/{id}``             audit                       who looked this subject up
``GET /v1/audit/verify``                    audit                       check the audit log's chain
``GET /metrics``                            admin, metrics              Prometheus text
``GET /healthz``, ``GET /openapi.json``     none                        liveness, the API document
``GET /review/``                            none (the page asks a key)  the examiner's page (static)
==========================================  ==========================  ===============================

A missing or unknown key is 401 (with ``WWW-Authenticate: Bearer``), a key without the role 403.
Without an ``Authorization`` header, a registered client certificate verified by the TLS
handshake (``biomatch serve --tls-client-ca``) stands for a key, with its own roles.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..decide import REVIEW
from ..errors import BiomatchError
from .adjudicate import case_view, resolve_case
from .audit import verify_log
from .auth import ApiKey, cert_fingerprint, peer_certificate
from .errors import ServiceError, error_body
from .guard import CONTEXT_KEY, RequestContext, RequestGuard
from .idempotency import IdempotencyConflict, IdempotencyInProgress, Recover, Replay
from .images import case_owner, record_images, subject_owner
from .images import for_display as image_for_display
from .inputs import Parsed, fingerprint, parse_form, parse_json, to_enrolment, to_probe
from .metrics import CONTENT_TYPE
from .params import ServiceParams
from .review import ReviewProbe
from .runtime import Service
from .schemas import (AuditEntriesOut, AuditVerifyOut, DecisionOut, EnrolIn, ErrorOut, HealthOut, IdentifyIn,
                      IdentifyOut, ProbeIn, RecordIn, RemovedOut, ReviewCaseOut, ReviewCasesOut, ReviewCaseViewOut,
                      ReviewOutcomeIn, SubjectOut, VerifyOut)

__all__ = ["create_app", "app_from_environment", "ENV_CONFIG"]

log = logging.getLogger(__name__)

ENV_CONFIG = "BIOMATCH_SERVICE_CONFIG"  # the JSON settings of app_from_environment (worker processes)
_SUBJECT = Path(min_length=1, max_length=256, description="the registry's subject id")
_ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 404, 409, 413, 415, 422, 503)}
_CASE_ID = Path(min_length=1, max_length=64, description="a review case id (rv_...)")
# The examiner's page: its own files only, no inline script or style, never framed; the answers
# holding templates are not cached.
_PAGE_FILES = {"": ("review.html", "text/html; charset=utf-8"), "review.js": ("review.js", "text/javascript"),
               "review.css": ("review.css", "text/css")}
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                 "img-src 'self' blob:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; "
                 "base-uri 'none'", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                 "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}
_NO_STORE = {"Cache-Control": "no-store"}


def _ctx(request: Request) -> RequestContext:
    return request.scope[CONTEXT_KEY]


def _candidate(c) -> dict:
    return {"subject_id": c.subject_id, "score": float(c.score),
            "finger_scores": {str(p): float(s) for p, s in c.finger_scores.items()},
            "face_score": None if c.face_score is None else float(c.face_score)}


def _decision(report, review_case: str | None = None) -> dict:
    return {"subject_id": report.subject_id, "decision": report.decision, "enrolled": bool(report.enrolled),
            "candidates": [_candidate(c) for c in report.candidates], "thresholds": dict(report.thresholds),
            "gallery_size": int(report.gallery_size), "positions_used": [int(p) for p in report.positions_used],
            "review_case": review_case, "recovered": False}


def _multipart_schema(with_subject: bool, extra: tuple = ()) -> dict:
    props = {f"finger_{p}": {"type": "string", "format": "binary"} for p in range(1, 11)}
    props.update({f"dpi_{p}": {"type": "number"} for p in range(1, 11)})
    props.update(face={"type": "string", "format": "binary"}, transaction={"type": "string", "format": "binary"},
                 dpi={"type": "number"})
    if with_subject:
        props.update(subject_id={"type": "string"}, metadata={"type": "string", "description": "JSON object"})
    for name in extra:
        props[name] = {"type": "string"}
    return {"type": "object", "properties": props, "additionalProperties": False,
            **({"required": ["subject_id"]} if with_subject else {})}


def _body_doc(model, with_subject: bool, extra: tuple = ()) -> dict:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
        "multipart/form-data": {"schema": _multipart_schema(with_subject, extra)}}}}


def create_app(service: Service, owns_service: bool = False) -> FastAPI:
    """The FastAPI application over ``service``.

    Parameters
    ----------
    service : Service
    owns_service : bool
        Close the service (and its gallery) when the application shuts down.
    """

    @asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            if owns_service:
                service.close()

    app = FastAPI(title="biomatch registry service", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  description="Fingerprint and face deduplication over a biomatch gallery. Every request except "
                              "GET /healthz is written to a hash-chained audit log before it is answered.")
    app.state.service = service
    app.add_middleware(RequestGuard, service=service)
    bearer = HTTPBearer(auto_error=False, description="an API key: `biomatch keys create GALLERY --role ROLE`")
    svc = service

    # ---- errors as JSON -----------------------------------------------------------------------
    def _refusal(request: Request, exc: BaseException, field: str | None = None) -> JSONResponse:
        status, body = error_body(exc, field)
        ctx = _ctx(request)
        ctx.error, ctx.field = body["error"], body["field"]
        headers = getattr(exc, "headers", None) or {}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError):
        return _refusal(request, exc)

    @app.exception_handler(BiomatchError)
    async def _biomatch_error(request: Request, exc: BiomatchError):
        if error_body(exc)[0] == 503:
            log.error("request %s: %s", _ctx(request).request_id, exc)
        return _refusal(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        err = exc.errors()[0] if exc.errors() else {"loc": ("body",), "msg": "invalid"}
        loc = [p for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = "".join(f"[{p}]" if isinstance(p, int) else (("." if i else "") + str(p))
                        for i, p in enumerate(loc)) or "body"
        return _refusal(request, ServiceError(422, f"{where}: {err.get('msg')}", where, "validation_error"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # FastAPI's own body decoding (a route with a pydantic body): bytes not JSON
            return _refusal(request, ServiceError(422, f"body: expected a JSON object, got a body that does not "
                                                       f"parse ({exc.detail})", "body", "validation_error"))
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _refusal(request, ServiceError(exc.status_code, str(exc.detail), None, kind, exc.headers))

    # ---- access ---------------------------------------------------------------------------------
    def role(operation: str, *roles: str):
        async def check(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> ApiKey:
            ctx = _ctx(request)
            ctx.operation = operation
            # A bearer key when one is sent, else the connection's verified client certificate
            # (from the TLS connection, never from a header).
            if creds is not None:
                key = svc.keys.authenticate(creds.credentials)
                what = "an unknown or revoked API key"
            else:
                der = peer_certificate(request.scope)
                key = svc.keys.authenticate_cert(der)
                if der is not None and key is None:
                    ctx.claimed_cert = cert_fingerprint(der)
                what = ("no API key and no client certificate" if der is None else
                        f"a client certificate that is not registered or was revoked (sha256 {ctx.claimed_cert})")
            if key is None:
                raise ServiceError(401, f"Authorization: expected 'Bearer <API key>' or a registered client "
                                        f"certificate, got {what}", "Authorization", "unauthorized",
                                   {"WWW-Authenticate": "Bearer"})
            ctx.key_id = key.key_id
            if key.kind == "cert":
                ctx.cert_subject = key.who
            if not set(key.roles) & set(roles):
                raise ServiceError(403, f"Authorization: the roles {list(key.roles)} of {key.kind} {key.key_id} do "
                                        f"not include {' or '.join(roles)}, which {operation} needs", "Authorization",
                                   "forbidden")
            return key
        return check

    async def parse(request: Request, model) -> Parsed:
        ct = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ct == "application/json":
            return parse_json(await request.body(), model)
        if ct == "multipart/form-data":
            try:
                form = await request.form(max_files=12, max_fields=40, max_part_size=svc.params.max_request_bytes)
            except Exception as exc:  # python-multipart's and Starlette's parse errors
                raise ServiceError(422, f"body: expected a multipart form, cannot read it ({exc})", "body",
                                   "validation_error") from None
            return await parse_form(form, model)
        raise ServiceError(415, f"Content-Type: expected application/json or multipart/form-data, got {ct!r}",
                           "Content-Type", "unsupported_media_type")

    def record_search(ctx: RequestContext, operation: str, decision: str | None, subject_ids) -> None:
        ctx.subject_ids = list(dict.fromkeys(subject_ids))
        ctx.decision = decision
        svc.metrics.searches.labels(operation).inc()
        if decision:
            svc.metrics.decisions.labels(operation, decision).inc()

    # ---- routes ---------------------------------------------------------------------------------
    @app.get("/healthz", response_model=HealthOut, tags=["service"])
    async def healthz(request: Request):
        _ctx(request).operation = "healthz"
        return {"status": "ok"}

    @app.get("/metrics", tags=["service"], responses=_ERRORS, response_class=Response)
    async def metrics(key: ApiKey = Depends(role("metrics", "admin", "metrics"))):
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/v1/enrol", response_model=DecisionOut, responses=_ERRORS, tags=["gallery"],
              openapi_extra=_body_doc(EnrolIn, True, ("review_case",)))
    async def enrol(request: Request, key: ApiKey = Depends(role("enrol", "enrol")),
                    idempotency_key: str | None = Header(None, alias="Idempotency-Key", min_length=1, max_length=200,
                                                         description="the client's unique key of this enrolment: "
                                                                     "a retry gets the first answer")):
        """Deduplicate a record, then enrol it unless it is a DUPLICATE (or a REVIEW, which is queued)."""
        ctx = _ctx(request)
        parsed = await parse(request, EnrolIn)
        sid = parsed.model.subject_id
        ctx.subject_ids = [sid]
        if idempotency_key is not None:
            try:
                claim = await svc.io(svc.idempotency.begin, key.key_id, idempotency_key, fingerprint(parsed), sid)
            except IdempotencyConflict as exc:
                raise ServiceError(422, str(exc), "Idempotency-Key", "idempotency_key_reused") from None
            except IdempotencyInProgress as exc:
                raise ServiceError(409, str(exc), "Idempotency-Key", "idempotency_in_progress") from None
            if isinstance(claim, Replay):
                ctx.replayed = True
                ctx.decision = claim.body.get("decision")
                ctx.subject_ids = [sid, *(c["subject_id"] for c in claim.body.get("candidates", ()))]
                return JSONResponse(claim.body, status_code=claim.status, headers={"Idempotent-Replay": "true"})
            if isinstance(claim, Recover) and await svc.run(svc.gallery.__contains__, sid):
                body = {"subject_id": sid, "decision": None if parsed.model.review_case else "UNIQUE",
                        "enrolled": True, "candidates": [], "thresholds": {}, "gallery_size": 0,
                        "positions_used": [], "review_case": parsed.model.review_case, "recovered": True}
                await svc.io(svc.idempotency.finish, key.key_id, idempotency_key, 200, body)
                ctx.decision, ctx.replayed = body["decision"], True
                return JSONResponse(body, headers={"Idempotent-Replay": "true"})
        try:
            body = await svc.run(_enrol, parsed, key)
        except BaseException:
            if idempotency_key is not None:
                await svc.io(svc.idempotency.abandon, key.key_id, idempotency_key)
            raise
        if idempotency_key is not None:
            await svc.io(svc.idempotency.finish, key.key_id, idempotency_key, 200, body)
        record_search(ctx, "enrol", body["decision"], [sid, *(c["subject_id"] for c in body["candidates"])])
        return body

    def _enrol(parsed: Parsed, key: ApiKey) -> dict:
        m = parsed.model
        accept_review = False
        if m.review_case is not None:
            if not svc.reviews.cleared(m.review_case, m.subject_id):
                raise ServiceError(409, f"review_case: expected a case of subject {m.subject_id!r} resolved "
                                        f"different_person, got {m.review_case!r}", "review_case", "review_not_cleared")
            accept_review = True
            cleared = svc.reviews.get(m.review_case)
            if cleared["enrolled"] and m.subject_id in svc.gallery:
                return cleared["enrolment"]  # the examiner's outcome enrolled the case's probe already
        record = to_enrolment(parsed)
        report = svc.gallery.enroll(record, accept_review=accept_review)
        case = None
        if report.decision == REVIEW and not report.enrolled:
            # The probe is kept with the case (never logged): the examiner's page draws it, and
            # "different person" enrols it.
            case = svc.reviews.open_case(report.subject_id, [_candidate(c) for c in report.candidates], key.key_id,
                                         ReviewProbe(dict(record.fingers), record.face, record.metadata))
        if svc.params.keep_images and (report.enrolled or case):
            keep_images(parsed, record, subject_owner(report.subject_id) if report.enrolled else case_owner(case))
        return _decision(report, case or m.review_case)

    def keep_images(parsed: Parsed, record, owner: str) -> None:
        # After the enrolment's commit: a failure here leaves the subject enrolled without its
        # images (the answer stands; the page then draws minutiae on a blank print).
        try:
            svc.images.put(owner, record_images(parsed.finger_images, record.fingers,
                                                parsed.face_bytes if record.face is not None else None))
        except Exception:
            log.exception("the images of %s were not kept", owner.split(":")[0])

    @app.post("/v1/deduplicate", response_model=DecisionOut, responses=_ERRORS, tags=["gallery"],
              openapi_extra=_body_doc(RecordIn, True))
    async def deduplicate(request: Request, key: ApiKey = Depends(role("deduplicate", "search"))):
        """Search a record against the gallery without enrolling it."""
        ctx = _ctx(request)
        parsed = await parse(request, RecordIn)
        ctx.subject_ids = [parsed.model.subject_id]
        report = await svc.run(lambda: svc.gallery.deduplicate(to_enrolment(parsed)))
        record_search(ctx, "deduplicate", report.decision, [report.subject_id, *(c.subject_id for c in report.candidates)])
        return _decision(report)

    @app.post("/v1/identify", response_model=IdentifyOut, responses=_ERRORS, tags=["gallery"],
              openapi_extra=_body_doc(IdentifyIn, False, ("k",)))
    async def identify(request: Request, key: ApiKey = Depends(role("identify", "search"))):
        """The k enrolled subjects closest to a probe, best first (no decision)."""
        ctx = _ctx(request)
        parsed = await parse(request, IdentifyIn)
        k = parsed.model.k
        if k > svc.params.max_identify_k:
            raise ServiceError(422, f"k: expected at most {svc.params.max_identify_k}, got {k}", "k", "validation_error")
        cands = await svc.run(lambda: svc.gallery.identify(to_probe(parsed), k=k))
        record_search(ctx, "identify", None, [c.subject_id for c in cands])
        return {"candidates": [_candidate(c) for c in cands]}

    @app.post("/v1/subjects/{subject_id}/verify", response_model=VerifyOut, responses=_ERRORS, tags=["gallery"],
              openapi_extra=_body_doc(ProbeIn, False))
    async def verify(request: Request, subject_id: str = _SUBJECT,
                     key: ApiKey = Depends(role("verify", "search"))):
        """1:1: a probe against one enrolled subject's common fingers."""
        ctx = _ctx(request)
        ctx.subject_ids = [subject_id]
        parsed = await parse(request, ProbeIn)
        v = await svc.run(lambda: svc.gallery.verify(subject_id, to_probe(parsed)))
        record_search(ctx, "verify", "match" if v.match else "no_match", [subject_id])
        return {"subject_id": v.subject_id, "match": bool(v.match), "score": float(v.score),
                "threshold": float(v.threshold), "target_fmr": float(v.target_fmr),
                "finger_scores": {str(p): float(s) for p, s in v.finger_scores.items()}}

    @app.get("/v1/subjects/{subject_id}", response_model=SubjectOut, responses=_ERRORS, tags=["gallery"])
    async def subject(request: Request, subject_id: str = _SUBJECT,
                      key: ApiKey = Depends(role("subject", "search", "adjudicate", "admin"))):
        """What is enrolled for a subject: positions, whether a face is held, metadata (never templates)."""
        _ctx(request).subject_ids = [subject_id]
        return await svc.run(svc.gallery.subject_info, subject_id)

    @app.delete("/v1/subjects/{subject_id}", response_model=RemovedOut, responses=_ERRORS, tags=["gallery"])
    async def remove(request: Request, subject_id: str = _SUBJECT, key: ApiKey = Depends(role("remove", "admin"))):
        """Remove a subject and its templates (durable when answered)."""
        _ctx(request).subject_ids = [subject_id]
        await svc.run(svc.gallery.remove, subject_id)
        if svc.images is not None:
            await svc.io(svc.images.delete, subject_owner(subject_id))
        return {"subject_id": subject_id, "removed": True}

    async def _image(owner: str, kind: str, position: int) -> Response:
        if svc.images is None:
            raise ServiceError(404, "path: this service keeps no images (biomatch serve --keep-images)", "path",
                               "not_found")
        data = await svc.io(svc.images.get, owner, kind, position)
        if data is None:
            raise ServiceError(404, f"path: no {kind} image {position} kept", "path", "not_found")
        data, media = await svc.io(image_for_display, kind, data)
        return Response(data, media_type=media, headers=_NO_STORE)

    @app.get("/v1/subjects/{subject_id}/images/{kind}/{position}", responses=_ERRORS, tags=["review"],
             response_class=Response)
    async def subject_image(request: Request, subject_id: str = _SUBJECT,
                            kind: str = Path(pattern="^(finger|face)$"), position: int = Path(ge=0, le=10),
                            key: ApiKey = Depends(role("subject_image", "adjudicate"))):
        """A kept image of an enrolled subject (finger position 1-10, or face 0): PNG or JPEG."""
        _ctx(request).subject_ids = [subject_id]
        if svc.images is not None and not await svc.io(svc.enrolled, subject_id):
            # removed outside the service since it opened: its images go now
            await svc.io(svc.images.delete, subject_owner(subject_id))
            raise ServiceError(404, f"subject_id: {subject_id!r} is not enrolled", "subject_id", "not_found")
        return await _image(subject_owner(subject_id), kind, position)

    @app.get("/v1/reviews/{case_id}/images/{kind}/{position}", responses=_ERRORS, tags=["review"],
             response_class=Response)
    async def case_image(request: Request, case_id: str = _CASE_ID, kind: str = Path(pattern="^(finger|face)$"),
                         position: int = Path(ge=0, le=10), key: ApiKey = Depends(role("case_image", "adjudicate"))):
        """A kept image of a REVIEW case's probe (finger position 1-10, or face 0): PNG or JPEG."""
        case = await svc.io(svc.reviews.get, case_id)
        _ctx(request).subject_ids = [case["subject_id"]]
        return await _image(case_owner(case_id), kind, position)

    @app.get("/v1/stats", responses=_ERRORS, tags=["gallery"])
    async def stats(key: ApiKey = Depends(role("stats", "search", "admin"))) -> dict:
        """Counts, memory and disk use, thresholds (no personal data)."""
        return json.loads(json.dumps(await svc.run(svc.gallery.stats), default=str))

    @app.get("/v1/reviews", response_model=ReviewCasesOut, responses=_ERRORS, tags=["review"])
    async def reviews(request: Request, status: str = Query("open", pattern="^(open|resolved|all)$"),
                      limit: int = Query(100, ge=1, le=1000),
                      key: ApiKey = Depends(role("reviews", "adjudicate"))):
        """The REVIEW queue, oldest first."""
        cases = await svc.io(svc.reviews.cases, status, limit)
        _ctx(request).subject_ids = list(dict.fromkeys(
            [c["subject_id"] for c in cases] + [x["subject_id"] for c in cases for x in c["candidates"]]))
        return {"cases": cases}

    @app.get("/v1/reviews/{case_id}", response_model=ReviewCaseViewOut, responses=_ERRORS, tags=["review"])
    async def review_case(request: Request, case_id: str = _CASE_ID,
                          key: ApiKey = Depends(role("review_case", "adjudicate"))):
        """A case for the examiner: per candidate and common finger, the probe's and the candidate's
        minutiae, the matcher's pairing and score (templates: personal data, never cached)."""
        ctx = _ctx(request)
        view = await svc.run(case_view, svc.gallery, svc.reviews, case_id, svc.images)
        ctx.subject_ids = [view["subject_id"], *(c["subject_id"] for c in view["candidates"])]
        return JSONResponse(ReviewCaseViewOut(**view).model_dump(mode="json"), headers=_NO_STORE)

    @app.post("/v1/reviews/{case_id}/outcome", response_model=ReviewCaseOut, responses=_ERRORS, tags=["review"])
    async def review_outcome(request: Request, outcome: ReviewOutcomeIn, case_id: str = _CASE_ID,
                             key: ApiKey = Depends(role("review_outcome", "adjudicate"))):
        """Record an examiner's outcome of a REVIEW case (once); ``different_person`` enrols the case's
        probe when it was kept (``enrolled``), else the registry re-sends the record with ``review_case``."""
        ctx = _ctx(request)
        case = await svc.run(resolve_case, svc.gallery, svc.reviews, case_id, outcome.outcome, key.key_id,
                             lambda report: _decision(report, case_id), svc.images)
        ctx.subject_ids = [case["subject_id"], *(c["subject_id"] for c in case["candidates"])]
        ctx.decision = outcome.outcome
        ctx.enrolled = case["enrolled"]
        if case["enrolled"]:
            svc.metrics.decisions.labels("review_outcome", "enrolled").inc()
        return case

    @app.get("/v1/audit/subjects/{subject_id}", response_model=AuditEntriesOut, responses=_ERRORS, tags=["audit"])
    async def audit_subject(request: Request, subject_id: str = _SUBJECT,
                            limit: int = Query(100, ge=1, le=svc.params.max_audit_results),
                            key: ApiKey = Depends(role("audit_subject", "audit"))):
        """Who enrolled, searched for, was answered with, or removed this subject: newest first."""
        _ctx(request).subject_ids = [subject_id]
        return {"subject_id": subject_id, "entries": await svc.io(svc.audit.entries_for, subject_id, limit)}

    @app.get("/v1/audit/verify", response_model=AuditVerifyOut, responses=_ERRORS, tags=["audit"])
    async def audit_verify(key: ApiKey = Depends(role("audit_verify", "audit"))):
        """Check the audit log's chain up to now (as ``biomatch audit verify``)."""
        return (await svc.io(verify_log, svc.audit.path)).as_dict()

    # ---- the examiner's page --------------------------------------------------------------------
    @app.get("/review", include_in_schema=False)
    async def review_page_redirect():
        return Response(status_code=308, headers={"Location": "/review/"})

    @app.get("/review/{name:path}", include_in_schema=False)
    async def review_page(name: str):
        """The page's static files (no key: they hold no data; the page asks for a key)."""
        if name not in _PAGE_FILES:
            raise ServiceError(404, f"path: no page file {name[:64]!r}", "path", "not_found")
        file, media = _PAGE_FILES[name]
        data = resources.files(__package__).joinpath("static", file).read_bytes()
        return Response(data, media_type=media, headers=_PAGE_HEADERS)

    def openapi():
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (EnrolIn, RecordIn, IdentifyIn, ProbeIn):
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, d in js.pop("$defs", {}).items():
                    comps.setdefault(name, d)
                comps[model.__name__] = js
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


def app_from_environment() -> FastAPI:
    """The application of a uvicorn worker process: its settings come from ``$BIOMATCH_SERVICE_CONFIG``
    (JSON: ``gallery``, ``params``, ``cluster_address``, ``n_threads``, ``cache_bytes``, ``key_file``), set by
    ``biomatch serve``."""
    cfg = json.loads(os.environ[ENV_CONFIG])
    service = Service.open(cfg["gallery"], ServiceParams(**cfg.get("params", {})), cfg.get("cluster_address"),
                           cfg.get("n_threads", 1), cfg.get("cache_bytes"), cfg.get("key_file"))
    return create_app(service, owns_service=True)
