"""``biomatch audit verify GALLERY [--anchor SEQ:HASH] [--json]``: check the service's audit log.
``biomatch audit subject GALLERY SUBJECT_ID [--limit N]``: who enrolled, searched for, was answered
with or removed this person (newest first; through the log's index by subject id).

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
    p = sub.add_parser("audit", help="the service's audit log: verify its hash chain, who looked up a person")
    asub = p.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    f = asub.add_parser("verify", help="check every entry's hash, sequence and chain (exit 1 at the first bad one)")
    f.add_argument("path", type=Path, metavar="GALLERY")
    f.add_argument("--anchor", metavar="SEQ:HASH", help="an entry recorded earlier that must still be there")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_verify)
    f = asub.add_parser("subject", help="who looked up this person: the entries naming a subject id, newest first")
    f.add_argument("path", type=Path, metavar="GALLERY")
    f.add_argument("subject_id", metavar="SUBJECT_ID")
    f.add_argument("--limit", type=int, default=100, help="most entries shown (default 100)")
    f.set_defaults(func=cmd_subject)


def _log_path(gallery: Path) -> Path:
    from ..service.audit import AUDIT_FILE
    from ..service.auth import service_dir

    path = service_dir(gallery, create=False) / AUDIT_FILE
    if not path.exists():
        from ..errors import invalid

        raise invalid("GALLERY", "a gallery that a service has run on (no service/audit.log)", str(gallery))
    return path


def cmd_subject(args) -> int:
    from ..errors import invalid
    from ..service.audit import AuditLog

    if args.limit < 1:
        raise invalid("--limit", "an int >= 1", args.limit)
    log = AuditLog(_log_path(args.path))  # the index is caught up with the log here
    try:
        for entry in log.entries_for(args.subject_id, args.limit):
            print(json.dumps(entry, sort_keys=True))
    finally:
        log.close()
    return EXIT_OK


def cmd_verify(args) -> int:
    from ..service.audit import parse_anchor, verify_log

    anchor = parse_anchor(args.anchor) if args.anchor else None
    path = _log_path(args.path)
    res = verify_log(path, anchor)
    if args.json:
        print(json.dumps(res.as_dict(), indent=1))
    elif res.ok:
        print(f"{path}: intact, {res.entries} entries; head {res.head_seq}:{res.head_hash}")
    else:
        print(f"{path}: BROKEN at line {res.line}: {res.problem} ({res.entries} entries intact before it)")
    return EXIT_OK if res.ok else EXIT_BROKEN
