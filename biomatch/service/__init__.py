"""The registry service: biomatch over HTTP, with API keys, an audit trail and idempotent enrolment.

``pip install 'biomatch[service]'``; ``biomatch serve GALLERY``.  One request, in order::

    guard (request id, size limit)  -> auth (API key, role)  -> inputs (decode images and
    templates)  -> idempotency (enrolment)  -> the gallery (embedded or on a Ray cluster)
    -> audit (hash-chained line, fsync'd)  -> response;  metrics throughout

=================  ==============================================================================
module             job
=================  ==============================================================================
``app``            the routes (FastAPI), each with its role
``guard``          ASGI middleware: request id, size limit, audit entry before the response, metrics
``auth``           API keys (hashed, with roles): create, list, revoke, authenticate
``audit``          the hash-chained audit log: append, query, verify
``idempotency``    Idempotency-Key -> first answer, durable across restarts
``review``         the REVIEW queue for examiners, and the probe kept with each open case
``adjudicate``     a case as the examiner's page draws it (the matcher's pairing); outcomes that enrol
``static/``        the examiner's page (HTML, CSS, JavaScript), served at ``/review/``
``inputs``         request payloads (JSON base64 or multipart) -> templates, through biomatch's readers
``schemas``        the JSON shapes (pydantic): the OpenAPI document
``errors``         errors as HTTP answers (400 / 404 / 409 / 503, JSON naming the field)
``metrics``        Prometheus metrics
``runtime``        the parts opened over one gallery (:class:`Service`)
``params``         the service's limits (:class:`ServiceParams`)
=================  ==============================================================================

FastAPI, uvicorn and prometheus_client are imported only here and by ``biomatch serve``: the
rest of biomatch never needs them.
"""

from __future__ import annotations

from .params import ServiceParams

__all__ = ["ServiceParams", "create_app", "Service"]


def __getattr__(name):  # the web stack is imported on first use
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "Service":
        from .runtime import Service

        return Service
    raise AttributeError(name)
