"""Client certificates: the verified peer certificate of each connection, handed to the app.

``biomatch serve --tls-client-ca CA`` makes the TLS server ask every client for a certificate
and verify it against ``CA`` during the handshake (OpenSSL: a certificate from another CA, an
expired one or one that is not a client certificate ends the handshake; none at all is let
through, so that API keys keep working, unless ``--require-client-cert``).  The app then needs
to know WHICH certificate the connection presented, to map it to roles
(:meth:`~biomatch.service.auth.KeyStore.authenticate_cert`).

The ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``) is the standard
place for it, but the installed uvicorn (0.55, h11 and httptools protocols) does not fill it.
:class:`PeerCertProtocol` does: it is uvicorn's own HTTP protocol, which after the handshake
reads the connection's SSL object (``transport.get_extra_info("ssl_object")``) and wraps the
application of that connection so that each request's scope carries the extension.  It comes
from the TLS connection itself, never from a header a client could send.  ``biomatch serve``
names it as uvicorn's ``http`` protocol class (``http="biomatch.service.tls:PeerCertProtocol"``,
a string, so worker processes import it too).

Only a certificate that the server's context verified is passed on (the context's
``verify_mode`` is not ``CERT_NONE``; with it, OpenSSL ends the handshake of a certificate that
fails verification, so a certificate that reaches this point is one the CA signed).
"""

from __future__ import annotations

import ssl

from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["PeerCertProtocol", "TLS_EXTENSION"]

TLS_EXTENSION = "tls"


class _WithPeerCert:
    """An ASGI app that adds the connection's verified client certificate to each request's scope."""

    def __init__(self, app, pem: str, tls_version, cipher):
        self.app = app
        self.info = {"server_cert": None, "client_cert_chain": [pem], "client_cert_name": None,
                     "client_cert_error": None, "tls_version": tls_version, "cipher_suite": cipher}

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http":
            extensions = dict(scope.get("extensions") or {})
            extensions[TLS_EXTENSION] = dict(self.info)
            scope["extensions"] = extensions
        await self.app(scope, receive, send)


class PeerCertProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol (h11 or httptools, as uvicorn chooses), plus the ASGI TLS extension
    for a connection that presented a verified client certificate.  Cost: one DER-to-PEM
    conversion per connection."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.context.verify_mode == ssl.CERT_NONE:
            return
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            cipher = ssl_object.cipher()
            self.app = _WithPeerCert(self.app, ssl.DER_cert_to_PEM_cert(der), ssl_object.version(),
                                     cipher[0] if cipher else None)
