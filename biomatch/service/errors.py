"""Errors as HTTP answers: every refusal is a JSON body ``{"detail", "field", "error"}``.

biomatch's typed errors keep their message (it names the argument, the expected and the actual
value); the status says whose fault it is: 400 bad input, 404 unknown subject or case, 409 a
conflict with what the gallery holds, 503 the service's storage.  Anything else is a bug: 500,
with no detail (it is logged).
"""

from __future__ import annotations

import re

from ..errors import (BiomatchError, DuplicateSubjectError, FaceError, GalleryClosedError, IncompatibleGalleryError,
                      IncompatibleTemplateError, StorageError, UnknownSubjectError)

__all__ = ["ServiceError", "status_of", "error_body"]

_FIELD = re.compile(r"^([A-Za-z_][\w.\[\]-]*): ")


class ServiceError(Exception):
    """A refusal decided by the service (auth, limits, request shape, idempotency).

    Attributes
    ----------
    status : int
    detail : str
    field : str or None
        The request field at fault (``fingers[2].data``), a header (``Authorization``), or None.
    kind : str
        A short machine-readable reason (``unauthorized``, ``forbidden``, ``too_large``, ...).
    headers : dict
    """

    def __init__(self, status: int, detail: str, field: str | None = None, kind: str = "invalid_request",
                 headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.field, self.kind = status, detail, field, kind
        self.headers = headers or {}


def status_of(exc: BaseException) -> int:
    """The HTTP status of a biomatch error."""
    if isinstance(exc, ServiceError):
        return exc.status
    if isinstance(exc, UnknownSubjectError):
        return 404
    if isinstance(exc, (DuplicateSubjectError, IncompatibleTemplateError, IncompatibleGalleryError)):
        return 409
    if isinstance(exc, (StorageError, GalleryClosedError)):
        return 503
    if isinstance(exc, BiomatchError):
        return 400
    return 500


def error_body(exc: BaseException, field: str | None = None) -> tuple[int, dict]:
    """``(status, JSON body)`` of an error; ``field`` overrides the one read from the message."""
    status = status_of(exc)
    if isinstance(exc, ServiceError):
        return status, {"detail": exc.detail, "field": exc.field, "error": exc.kind}
    if status == 500:
        return 500, {"detail": "internal error (logged with the request id)", "field": None, "error": "internal"}
    if status == 503:  # storage messages name server paths: not for clients
        return 503, {"detail": f"the service's storage is unavailable ({type(exc).__name__}); retry later",
                     "field": None, "error": type(exc).__name__}
    msg = str(exc)
    if field is None:
        m = _FIELD.match(msg)
        field = m.group(1) if m else ("face" if isinstance(exc, FaceError) else None)
    return status, {"detail": msg, "field": field, "error": type(exc).__name__}
