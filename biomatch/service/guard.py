"""The request guard: one ASGI middleware around every route.

For each request, in this order: a request id; the size limit (a body over
``max_request_bytes`` is answered 413 before any parsing; the body is read here, within the
limit, and replayed to the route); the route; then, at the moment the response starts and
BEFORE its first byte is sent, the audit entry (fsync'd; if it cannot be written the answer is
replaced by a 503, so that nothing is acknowledged unaudited); the metrics.  An exception that
escapes a route becomes a 500 here, audited too.  ``GET /healthz`` alone is not audited (no
key, no personal data, polled every few seconds).

Routes describe their request for the audit log through the :class:`RequestContext` in
``scope["biomatch.context"]``: operation, key id, subject ids, decision.  The examiner's page
(``GET /review/...``: static HTML, CSS and JavaScript, no key, no personal data) is not audited
either; the API calls it makes are.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field

import anyio

from .errors import error_body

__all__ = ["RequestContext", "RequestGuard", "CONTEXT_KEY"]

log = logging.getLogger(__name__)

CONTEXT_KEY = "biomatch.context"
_UNAUDITED = {("GET", "/healthz")}
_PAGE = "/review"  # the examiner page's static files: GET /review and /review/...
_KEY_ID = re.compile(rb"^bearer\s+bmk_([0-9a-f]{16})_", re.I)


@dataclass
class RequestContext:
    """What the audit log and the metrics record of one request (never a template or an image)."""

    request_id: str
    method: str
    path: str
    client: str | None
    operation: str = "unknown"
    key_id: str | None = None
    claimed_key_id: str | None = None
    subject_ids: list = field(default_factory=list)
    decision: str | None = None
    status: int = 0
    error: str | None = None
    field: str | None = None
    replayed: bool = False
    enrolled: bool | None = None  # a review outcome that enrolled (or failed to enrol) the case's probe
    cert_subject: str | None = None  # who, when a client certificate authenticated the request
    claimed_cert: str | None = None  # the fingerprint of a refused (unregistered or revoked) certificate

    def entry(self) -> dict:
        e = {"request_id": self.request_id, "operation": self.operation, "method": self.method,
             "key_id": self.key_id, "subject_ids": list(self.subject_ids), "decision": self.decision,
             "status": self.status, "client": self.client}
        if self.operation == "unknown":
            e["path"] = self.path[:200]
        if self.key_id is None and self.claimed_key_id:
            e["claimed_key_id"] = self.claimed_key_id
        if self.cert_subject is not None:
            e["cert_subject"] = self.cert_subject
        if self.key_id is None and self.claimed_cert:
            e["claimed_cert_sha256"] = self.claimed_cert
        if self.error:
            e["error"], e["field"] = self.error, self.field
        if self.replayed:
            e["replayed"] = True
        if self.enrolled is not None:
            e["enrolled"] = self.enrolled
        return e


class _TooLarge(Exception):
    pass


class RequestGuard:
    """ASGI middleware: request id, size limit, audit before response, metrics."""

    def __init__(self, app, service):
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        svc = self.service
        client = scope.get("client")
        ctx = RequestContext(uuid.uuid4().hex, scope["method"], scope.get("path", ""),
                             client[0] if client else None)
        headers = dict(scope.get("headers") or ())
        m = _KEY_ID.match(headers.get(b"authorization", b""))
        ctx.claimed_key_id = m.group(1).decode() if m else None
        scope[CONTEXT_KEY] = ctx
        audited = (ctx.method, ctx.path) not in _UNAUDITED and not (
            ctx.method == "GET" and (ctx.path == _PAGE or ctx.path.startswith(_PAGE + "/")))
        started = replaced = False
        t0 = time.perf_counter()
        svc.metrics.in_flight.inc()

        async def send_guarded(message):
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                started = True
                ctx.status = int(message["status"])
                if audited and not await self._audit(ctx):
                    replaced = True
                    await self._send_json(send, ctx, 503, {"detail": "the audit log cannot be written; nothing "
                                                           "is acknowledged without it", "field": None,
                                                           "error": "audit_unavailable"}, audit=False)
                    return
                message = dict(message, headers=list(message.get("headers", [])) +
                               [(b"x-request-id", ctx.request_id.encode())])
            await send(message)

        try:
            try:
                body = await self._read_body(scope, receive, headers)
            except _TooLarge:
                ctx.error, ctx.field = "too_large", "body"
                limit = svc.params.max_request_bytes
                await self._send_json(send, ctx, 413, {
                    "detail": f"body: expected at most {limit} bytes ({limit / 2**20:g} MiB), got more",
                    "field": "body", "error": "too_large"}, audit=audited)
                return
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # the client's disconnect, if any

            await self.app(scope, replay, send_guarded)
        except Exception as exc:  # a bug in a route: audited as a 500, never a traceback to the client
            log.exception("request %s (%s %s) failed", ctx.request_id, ctx.method, ctx.path[:200])
            if started:
                raise
            ctx.error = type(exc).__name__
            status, body = error_body(exc)
            await self._send_json(send, ctx, status, body, audit=audited)
        finally:
            svc.metrics.in_flight.dec()
            svc.metrics.requests.labels(ctx.operation, str(ctx.status)).inc()
            svc.metrics.latency.labels(ctx.operation).observe(time.perf_counter() - t0)

    async def _read_body(self, scope, receive, headers) -> bytes:
        limit = self.service.params.max_request_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _TooLarge
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _audit(self, ctx: RequestContext) -> bool:
        try:
            await anyio.to_thread.run_sync(self.service.audit.append, ctx.entry())
            return True
        except Exception:
            log.exception("request %s: the audit entry could not be written", ctx.request_id)
            return False

    async def _send_json(self, send, ctx: RequestContext, status: int, body: dict, audit: bool) -> None:
        ctx.status = status
        if audit and not await self._audit(ctx):
            status, body = 503, {"detail": "the audit log cannot be written", "field": None,
                                 "error": "audit_unavailable"}
            ctx.status = status
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                (b"x-request-id", ctx.request_id.encode())]})
        await send({"type": "http.response.body", "body": data})
