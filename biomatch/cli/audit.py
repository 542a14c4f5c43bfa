"""``biomatch audit verify GALLERY [--anchor SEQ:HASH] [--json]``: check the service's audit log.

Exit 0 when every line is intact (the head, ``seq`` and ``hash`` of the last entry, is printed:
record it elsewhere and give it back as ``--anchor`` to detect entries cut off the end later);
1 naming the first bad line and what is wrong with it (edited, removed, reordered, torn).
"""

from __future__ import annotations

import json
from pathlib import Path

from ._common import EXIT_OK

__all__ = ["add_parsers"]

EXIT_BROKEN = 1  # like `gallery check`: the log is not sound


def add_parsers(sub) -> None:
    p = sub.add_parser("audit", help="the service's audit log: verify its hash chain")
    asub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    f = asub.add_parser("verify", help="check every entry's hash, sequence and chain (exit 1 at the first bad one)")
    f.add_argument("path", type=Path, metavar="GALLERY")
    f.add_argument("--anchor", metavar="SEQ:HASH", help="an entry recorded earlier that must still be there")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_verify)


def cmd_verify(args) -> int:
    from ..service.audit import AUDIT_FILE, parse_anchor, verify_log
    from ..service.auth import service_dir

    anchor = parse_anchor(args.anchor) if args.anchor else None
    path = service_dir(args.path, create=False) / AUDIT_FILE
    if not path.exists():
        from ..errors import invalid

        raise invalid("GALLERY", "a gallery that a service has run on (no service/audit.log)", str(args.path))
    res = verify_log(path, anchor)
    if args.json:
        print(json.dumps(res.as_dict(), indent=1))
    elif res.ok:
        print(f"{path}: intact, {res.entries} entries; head {res.head_seq}:{res.head_hash}")
    else:
        print(f"{path}: BROKEN at line {res.line}: {res.problem} ({res.entries} entries intact before it)")
    return EXIT_OK if res.ok else EXIT_BROKEN
