"""``biomatch keys create|list|revoke GALLERY``: the API keys of the service (:mod:`biomatch.service.auth`).

Commands::

    biomatch keys create GALLERY --role ROLE [--role ROLE ...] [--name NAME]   prints the new key ONCE
    biomatch keys add-cert GALLERY --cert client.pem --role ROLE [--name NAME] a client certificate's roles
    biomatch keys list GALLERY [--json]                                         ids, names, roles, dates
    biomatch keys revoke GALLERY KEY_ID                                         refused from the next request

A client certificate (``biomatch serve --tls-client-ca``) is registered by its SHA-256
fingerprint (with its subject, issuer, serial and expiry; never a private key), listed and
revoked like a key under the id ``cert-<16 hex digits of the fingerprint>``.

Keys are stored hashed in ``GALLERY/service/keys.json`` (0600); a running service sees changes
at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..service.auth import ROLES  # standard library only: the web stack is not imported here
from ._common import EXIT_OK

__all__ = ["add_parsers"]


def add_parsers(sub) -> None:
    p = sub.add_parser("keys", help="API keys and client certificates of the service: create, add-cert, list, revoke",
                       description="API keys of `biomatch serve`, stored hashed under the gallery.")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    f = ksub.add_parser("create", help="create a key (printed once)")
    f.add_argument("path", type=Path, metavar="GALLERY")
    f.add_argument("--role", action="append", required=True, choices=ROLES, dest="roles",
                   help="a role of the key (repeat for several)")
    f.add_argument("--name", default="", help="who or what holds the key (shown by list and in no response)")
    f.set_defaults(func=cmd_create)
    f = ksub.add_parser("add-cert", help="register a client certificate with roles (its fingerprint is stored)")
    f.add_argument("path", type=Path, metavar="GALLERY")
    f.add_argument("--cert", type=Path, required=True, help="the client's certificate (PEM; only the first "
                   "certificate of the file is read)")
    f.add_argument("--role", action="append", required=True, choices=ROLES, dest="roles",
                   help="a role of the certificate (repeat for several)")
    f.add_argument("--name", default="", help="who holds the certificate (shown by list)")
    f.set_defaults(func=cmd_add_cert)
    f = ksub.add_parser("list", help="list keys (never the keys themselves)")
    f.add_argument("path", type=Path, metavar="GALLERY")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_list)
    f = ksub.add_parser("revoke", help="revoke a key")
    f.add_argument("path", type=Path, metavar="GALLERY")
    f.add_argument("key_id", metavar="KEY_ID")
    f.set_defaults(func=cmd_revoke)


def _store(path: Path):
    from ..service.auth import KeyStore, service_dir

    return KeyStore(service_dir(path))


def cmd_create(args) -> int:
    rec, token = _store(args.path).create(args.roles, args.name)
    print(token)
    print(f"key {rec.key_id} ({', '.join(rec.roles)}) created; the key above is shown only now: store it "
          f"in a secret manager", file=sys.stderr)
    return EXIT_OK


def cmd_add_cert(args) -> int:
    from ..errors import invalid

    try:
        pem = args.cert.read_bytes()
    except OSError as exc:
        raise invalid("--cert", "a readable PEM file", f"{args.cert} ({exc.strerror})") from None
    rec = _store(args.path).add_cert(pem, args.roles, args.name, str(args.cert))
    print(f"certificate {rec.key_id} ({', '.join(rec.roles)}) registered: {rec.cert['subject']}, "
          f"sha256 {rec.digest}, expires {rec.cert['not_after_utc']}")
    return EXIT_OK


def cmd_list(args) -> int:
    keys = [k.public() for k in _store(args.path).list()]
    if args.json:
        print(json.dumps(keys, indent=1))
        return EXIT_OK
    print("key_id\tkind\tname\troles\tcreated_utc\trevoked_utc\tcertificate")
    for k in keys:
        cert = f"{k['cert']['subject']} (expires {k['cert']['not_after_utc']})" if k.get("cert") else "-"
        print(f"{k['key_id']}\t{k['kind']}\t{k['name'] or '-'}\t{','.join(k['roles'])}\t{k['created_utc']}\t"
              f"{k['revoked_utc'] or '-'}\t{cert}")
    return EXIT_OK


def cmd_revoke(args) -> int:
    rec = _store(args.path).revoke(args.key_id)
    print(f"{'certificate' if rec.kind == 'cert' else 'key'} {rec.key_id} revoked ({rec.revoked_utc})")
    return EXIT_OK
