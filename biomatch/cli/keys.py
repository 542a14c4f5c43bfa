"""``biomatch keys create|list|revoke GALLERY``: the API keys of the service (:mod:`biomatch.service.auth`).

Commands::

    biomatch keys create GALLERY --role ROLE [--role ROLE ...] [--name NAME]   prints the new key ONCE
    biomatch keys list GALLERY [--json]                                         ids, names, roles, dates
    biomatch keys revoke GALLERY KEY_ID                                         refused from the next request

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
    p = sub.add_parser("keys", help="API keys of the service: create, list, revoke",
                       description="API keys of `biomatch serve`, stored hashed under the gallery.")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    f = ksub.add_parser("create", help="create a key (printed once)")
    f.add_argument("path", type=Path, metavar="GALLERY")
    f.add_argument("--role", action="append", required=True, choices=ROLES, dest="roles",
                   help="a role of the key (repeat for several)")
    f.add_argument("--name", default="", help="who or what holds the key (shown by list and in no response)")
    f.set_defaults(func=cmd_create)
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


def cmd_list(args) -> int:
    keys = [k.public() for k in _store(args.path).list()]
    if args.json:
        print(json.dumps(keys, indent=1))
        return EXIT_OK
    print("key_id\tname\troles\tcreated_utc\trevoked_utc")
    for k in keys:
        print(f"{k['key_id']}\t{k['name'] or '-'}\t{','.join(k['roles'])}\t{k['created_utc']}\t{k['revoked_utc'] or '-'}")
    return EXIT_OK


def cmd_revoke(args) -> int:
    rec = _store(args.path).revoke(args.key_id)
    print(f"key {rec.key_id} revoked ({rec.revoked_utc})")
    return EXIT_OK
