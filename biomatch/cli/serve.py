"""``biomatch serve GALLERY``: the registry service over HTTP (uvicorn; the ``[service]`` extra).

Command::

    biomatch serve GALLERY [--host 127.0.0.1] [--port 8443] [--certfile F --keyfile F] [--workers N]
                           [--tls-client-ca CA [--require-client-cert]]
                           [--max-request-mb N] [--max-concurrent N] [--cache-mb N] [--cluster ADDRESS]
                           [--threads N] [--key-file FILE] [--keep-images [--keep-images-in-clear]]

``--tls-cert`` / ``--tls-key`` are other names of ``--certfile`` / ``--keyfile``.  With
``--tls-client-ca CA`` the TLS handshake asks each client for a certificate and verifies it
against ``CA`` (one from another CA ends the handshake); a request without ``Authorization``
is then authenticated by its certificate, registered with ``biomatch keys add-cert``.  Without
``--require-client-cert`` a client may also connect without a certificate and use an API key.

Without a certificate the service speaks plain HTTP and is meant for loopback or a TLS proxy in
front of it: binding another address without TLS is refused unless ``--insecure-http``.  With
several workers each is a process with the gallery open (writes are serialised by the
gallery's lock; the audit chain by the log's), and the metrics are summed across them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import invalid
from ._common import EXIT_OK, int_in

__all__ = ["add_parsers"]


def add_parsers(sub) -> None:
    f = sub.add_parser("serve", help="serve a gallery over HTTP: enrol, dedup, identify, verify (needs [service])",
                       description="Run the registry service (FastAPI on uvicorn) over a gallery. Requests carry "
                                   "'Authorization: Bearer KEY' (biomatch keys create); every request is audited.")
    f.add_argument("path", type=Path, metavar="GALLERY")
    f.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    f.add_argument("--port", type=int_in(0, 65535), default=8443, help="port (default 8443; 0: any free port)")
    f.add_argument("--certfile", "--tls-cert", type=Path, dest="certfile", help="TLS certificate chain (PEM)")
    f.add_argument("--keyfile", "--tls-key", type=Path, dest="keyfile", help="TLS private key (PEM)")
    f.add_argument("--tls-client-ca", type=Path, metavar="CA",
                   help="CA certificates (PEM) that sign the clients' certificates: a client certificate is asked "
                        "for and verified, and a registered one (biomatch keys add-cert) stands for an API key")
    f.add_argument("--require-client-cert", action="store_true",
                   help="with --tls-client-ca: refuse, at the handshake, a client without a certificate "
                        "(default: such a client may use an API key)")
    f.add_argument("--workers", type=int_in(1, 64), default=1, help="worker processes (default 1)")
    f.add_argument("--max-request-mb", type=int_in(1, 1024), default=32,
                   help="largest request body in MiB (default 32): larger ones get 413")
    f.add_argument("--max-concurrent", type=int_in(1, 256), default=None,
                   help="gallery operations at once per worker (default: the CPUs); the rest queue")
    f.add_argument("--cache-mb", type=int_in(0, 1 << 20), default=None,
                   help="bound of each shard's cache of prepared templates in MiB (default 512): the service's "
                        "memory is about its idle size plus this per shard")
    f.add_argument("--threads", type=int_in(1, 256), default=1, help="native matcher threads per search (default 1)")
    f.add_argument("--key-file", type=Path, metavar="FILE",
                   help="an encrypted gallery's key file (default: the key in BIOMATCH_GALLERY_KEY); "
                        "not the TLS key (--keyfile)")
    f.add_argument("--keep-images", action="store_true",
                   help="keep the submitted finger and face images of enrolled subjects and REVIEW cases, sealed "
                        "with the gallery's data key, for the examiner's page (an encrypted gallery only)")
    f.add_argument("--keep-images-in-clear", action="store_true",
                   help="with --keep-images: allow it on an unencrypted gallery (the images are then readable "
                        "on disk)")
    f.add_argument("--cluster", metavar="ADDRESS", help="serve the gallery on this Ray cluster (DistributedGallery)")
    f.add_argument("--insecure-http", action="store_true",
                   help="allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy only)")
    f.set_defaults(func=cmd_serve)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_serve(args) -> int:
    if (args.certfile is None) != (args.keyfile is None):
        raise invalid("--certfile/--keyfile", "both or neither", "only one")
    if args.tls_client_ca is not None and args.certfile is None:
        raise invalid("--tls-client-ca", "with --tls-cert/--tls-key (client certificates need TLS)", "without")
    if args.require_client_cert and args.tls_client_ca is None:
        raise invalid("--require-client-cert", "with --tls-client-ca", "without")
    if args.tls_client_ca is not None and not args.tls_client_ca.is_file():
        raise invalid("--tls-client-ca", "a PEM file of CA certificates", str(args.tls_client_ca))
    if args.certfile is None and not _loopback(args.host) and not args.insecure_http:
        raise invalid("--host", "a loopback address without --certfile/--keyfile (biometric data must not travel "
                      "in clear; --insecure-http behind a TLS proxy)", args.host)
    try:
        import uvicorn  # noqa: F401
        import fastapi  # noqa: F401
    except ImportError as exc:
        raise invalid("serve", "the service extra: pip install 'biomatch[service]'", str(exc)) from None
    import uvicorn

    from ..dedup import manifest as gallery_manifest
    from ..dedup.core import open_keyring
    from ..dedup.encryption import KeyFile
    from ..service.auth import KeyStore, service_dir

    # The gallery and its key checked here (manifest only: no store is opened), so that a missing
    # or wrong key is one clear error, not a worker that dies at start-up.
    keyring = open_keyring(args.path, gallery_manifest.read_manifest(args.path),
                           None if args.key_file is None else KeyFile(args.key_file))
    if args.keep_images_in_clear and not args.keep_images:
        raise invalid("--keep-images-in-clear", "with --keep-images", "without")
    if args.keep_images and keyring is None and not args.keep_images_in_clear:
        raise invalid("--keep-images", "an encrypted gallery (finger and face images must not be stored in clear: "
                      "create it with `biomatch gallery create --encrypt`, or add --keep-images-in-clear to store "
                      "them readable)", f"{args.path} (not encrypted)")
    from ..service.params import ServiceParams

    folder = service_dir(args.path)
    if not KeyStore(folder).list():
        print("biomatch serve: no API key yet: every request will be refused (401) until one is created with "
              f"`biomatch keys create {args.path} --role ...`", file=sys.stderr)
    params = {"max_request_bytes": args.max_request_mb * 2**20, "keep_images": args.keep_images,
              "keep_images_in_clear": args.keep_images_in_clear}
    if args.max_concurrent is not None:
        params["max_concurrent_searches"] = args.max_concurrent
    ServiceParams(**params)  # checked before anything starts
    tls = {} if args.certfile is None else {"ssl_certfile": str(args.certfile), "ssl_keyfile": str(args.keyfile)}
    if args.tls_client_ca is not None:
        import ssl

        # OpenSSL verifies a presented certificate during the handshake (CERT_OPTIONAL still
        # refuses one that fails); uvicorn's protocol is extended to hand it to the app.
        tls.update(ssl_ca_certs=str(args.tls_client_ca),
                   ssl_cert_reqs=ssl.CERT_REQUIRED if args.require_client_cert else ssl.CERT_OPTIONAL,
                   http="biomatch.service.tls:PeerCertProtocol")
    common = dict(host=args.host, port=args.port, workers=args.workers, log_level="info", access_log=False,
                  proxy_headers=False, server_header=False, timeout_graceful_shutdown=30, **tls)
    # Worker processes build the app from the environment (uvicorn imports it by name).
    os.environ["BIOMATCH_SERVICE_CONFIG"] = json.dumps({"gallery": str(args.path.resolve()), "params": params,
                                                        "cluster_address": args.cluster, "n_threads": args.threads,
                                                        "cache_bytes": None if args.cache_mb is None
                                                        else args.cache_mb * 2**20,
                                                        "key_file": None if args.key_file is None
                                                        else str(args.key_file.resolve())})
    metrics_dir = None
    if args.workers > 1:
        metrics_dir = tempfile.mkdtemp(prefix="metrics-", dir=folder)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run("biomatch.service.app:app_from_environment", factory=True, **common)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return EXIT_OK
