"""``biomatch gallery ...``: a durable 1:N gallery on this machine.

Commands::

    biomatch gallery create PATH [--retrieval faiss|exhaustive] [--shards N] [--min-quality Q]
                                 [--encrypt [--key-file FILE]]
    biomatch gallery new-key FILE                      a new key-encryption key (32 random bytes, 0600)
    biomatch gallery info PATH [--json]                the manifest's facts, encryption included (no key)
    biomatch gallery rotate-key PATH --key-file OLD [--new-key-file NEW] [--reencrypt] [--batch N]
    biomatch gallery enroll PATH FOLDER_OR_MANIFEST [--dpi N] [--quiet] [--accept-review] [--window W] [--threads T]
        [--processes P]
    biomatch gallery enroll PATH TRANSACTION.an2k [--subject ID] [--force | --reorder] [--accept-review]
    biomatch gallery dedup PATH FOLDER_OR_MANIFEST|TRANSACTION.an2k [--dpi N] [--quiet] [--threads T]
        [--processes P]
    biomatch gallery stats PATH [--json]
    biomatch gallery add-shard PATH                    one more shard; nothing already enrolled moves
    biomatch gallery check PATH [--repair [--accept-store-loss]] [--json]   exit 1 when not sound
    biomatch gallery backup PATH DEST                  online, consistent copy (writers wait)
    biomatch gallery restore BACKUP DEST [--replace]   every file's SHA-256 checked first
    biomatch gallery import PATH SOURCE [--batch N] [--resume]   templates, NO dedup (see .gallery_import)

An encrypted gallery (:mod:`biomatch.dedup.encryption`) is opened with ``--key-file FILE`` (on
every command that opens one) or, without it, with the base64 key in ``BIOMATCH_GALLERY_KEY``;
without either, or with another key, the command fails (exit 2) naming the key id it needs.

The input of ``enroll`` and ``dedup`` is described in :mod:`.inputs`; every record is checked
before anything is searched or enrolled. ``enroll`` is resumable: subjects already enrolled are
skipped, including those that another run of the same manifest enrolls meanwhile (two runs may
go concurrently). One line per record goes to stdout (ids escaped: non-printable characters as
``\\x..`` / ``\\u....``), a progress bar to stderr. A record that fails (unreadable image, no
usable finger) is reported and the run goes on; the exit code is then 2. :mod:`.cluster` runs
the same ``enroll`` and ``dedup`` on a Ray cluster through :func:`run_records`.

An ANSI/NIST-ITL ten-print transaction (``.an2k``, ``.eft``, ``.nist``, or any file starting with
``1.001:``) is one subject: its steps -- read, slap segmentation, extraction, sequence check of
the rolled prints against the slaps, quality, then dedup -- are printed one line each
(:mod:`biomatch.dedup.tenprint`); a failed step (a slap showing fewer fingers than it declares, a
corrupt record, swapped fingers without ``--force``) enrols nothing and exits 2.

The extractor is imported when the first record is read, so that ``--help`` and usage errors do
not pay for compiling it.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..decide import DecisionParams
from ..dedup import DuplicateSubjectError, Enrolment, Gallery, backup_gallery, check_gallery, restore_gallery
from ..dedup import manifest as _manifest
from ..dedup.encryption import KEY_ENV, KeyEnv, KeyFile, describe_section, generate_key_file
from ..dedup.rekey import rotate_key
from ..dedup.records import escape_unprintable, printable_id
from ..errors import BiomatchError, InvalidInputError
from . import gallery_import
from ._common import EXIT_INPUT, EXIT_OK, Progress, dpi, int_in, positive_int
from .inputs import FACE, read_input

__all__ = ["add_parsers", "run_records", "print_stats", "print_added"]


def add_parsers(sub) -> None:
    """Add ``gallery`` and its actions to the top-level sub-parsers."""
    p = sub.add_parser("gallery", help="a durable 1:N gallery: create, enrol, deduplicate, stats",
                       description="Create a gallery, enrol a folder or manifest (resumable), deduplicate, stats.")
    gsub = p.add_subparsers(dest="gallery_command", required=True, metavar="ACTION")
    f = gsub.add_parser("create", help="create a gallery in a new or empty folder")
    f.add_argument("path", type=Path, metavar="PATH")
    f.add_argument("--retrieval", choices=["faiss", "exhaustive"], default="faiss",
                   help="candidate retrieval (default faiss)")
    f.add_argument("--shards", type=positive_int, default=1, help="partitions (default 1)")
    f.add_argument("--min-quality", type=positive_int, default=0, metavar="Q",
                   help="refuse enrolments with a finger of print quality below Q (0-100; default 0: none)")
    f.add_argument("--encrypt", action="store_true",
                   help=f"encrypt templates, faces and metadata at rest (AES-256-GCM) under the key of --key-file "
                        f"(or {KEY_ENV}); every later command needs that key")
    _key_arg(f)
    f.set_defaults(func=cmd_create)
    f = gsub.add_parser("new-key", help="write a new key-encryption key file (32 random bytes, mode 0600)")
    f.add_argument("file", type=Path, metavar="FILE")
    f.set_defaults(func=cmd_new_key)
    f = gsub.add_parser("info", help="what the manifest says: id, shards, retrieval, encryption (needs no key)")
    f.add_argument("path", type=Path, metavar="PATH")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_info)
    f = gsub.add_parser("rotate-key", help="re-wrap the data keys under a new key, or re-encrypt every record",
                        description="Re-wrap the gallery's data keys under --new-key-file (instant), and/or with "
                                    "--reencrypt re-encrypt every record under a new data key in batches "
                                    "(resumable: run it again after an interruption). Searches go on meanwhile.")
    f.add_argument("path", type=Path, metavar="PATH")
    _key_arg(f, "the gallery's current key file")
    f.add_argument("--new-key-file", type=Path, metavar="FILE", help="re-wrap the data keys under this key")
    f.add_argument("--reencrypt", action="store_true", help="re-encrypt every record under a new data key")
    f.add_argument("--batch", type=int_in(1, 100_000), default=2000, help="rows per transaction (default 2000)")
    f.add_argument("--quiet", action="store_true", help="no progress on stderr")
    f.set_defaults(func=cmd_rotate_key)
    for name, enrol, text in (("enroll", True, "deduplicate and enrol each subject (skips enrolled ones)"),
                              ("dedup", False, "deduplicate each subject against the gallery (read only)")):
        f = gsub.add_parser(name, help=text, description=text + ". Input: a folder of <subject>_<position>.<ext> "
                            "images or a CSV manifest subject_id,position,path[,dpi].")
        f.add_argument("path", type=Path, metavar="PATH")
        f.add_argument("source", type=Path, metavar="FOLDER_OR_MANIFEST",
                       help="a folder of images, a CSV manifest, or an ANSI/NIST-ITL ten-print transaction")
        f.add_argument("--dpi", type=dpi, help="resolution of the images (unless given per manifest row)")
        f.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
        f.add_argument("--subject", metavar="ID",
                       help="transaction: the subject id (default its TCN, 1.009, else the file name)")
        f.add_argument("--force", action="store_true",
                       help="transaction: enrol in the claimed order even if the sequence check fails")
        f.add_argument("--reorder", action="store_true",
                       help="transaction: if the sequence check fails, enrol the rolled prints in the order it suggests")
        if enrol:
            f.add_argument("--accept-review", action="store_true", help="enrol records whose decision is REVIEW")
            f.add_argument("--window", type=int_in(1, 4096), default=8,
                           help="records searched together, then committed in order, each also compared with "
                                "those committed ahead of it (default 8; 1: one at a time)")
            f.add_argument("--threads", type=int_in(1, 256), default=2,
                           help="images extracted and searches run at once (default 2)")
            f.add_argument("--processes", type=int_in(0, 256), default=0,
                           help="run the window's searches in this many processes instead of threads (one per "
                                "core; each opens the gallery read-only, ~1 s to start; default 0: threads)")
        else:
            f.add_argument("--threads", type=int_in(1, 256), default=2,
                           help="images extracted at once (default 2)")
            f.add_argument("--processes", type=int_in(0, 256), default=0,
                           help="run the searches in this many processes (one per core; default 0: in turn)")
        _key_arg(f)
        f.set_defaults(func=lambda a, e=enrol: run_records(a, e), accept_review=False)
    f = gsub.add_parser("stats", help="counts, memory, disk, thresholds")
    f.add_argument("path", type=Path, metavar="PATH")
    f.add_argument("--json", action="store_true")
    _key_arg(f)
    f.set_defaults(func=cmd_stats)
    f = gsub.add_parser("add-shard", help="add a shard: new subjects are spread over all shards, "
                        "enrolled ones never move")
    f.add_argument("path", type=Path, metavar="PATH")
    _key_arg(f)
    f.set_defaults(func=cmd_add_shard)
    f = gsub.add_parser("check", help="verify that store, watermark, index and manifest agree (exit 1 if not)",
                        description="Verify a gallery: SQLite's integrity check and every row's checksum, the "
                                    "watermark (nothing acknowledged is missing), the index row for row against "
                                    "the store, the manifest's checksum. --repair rebuilds what is derived and "
                                    "removes leftovers of interrupted operations; the store is never rewritten.")
    f.add_argument("path", type=Path, metavar="PATH")
    f.add_argument("--repair", action="store_true", help="rebuild derived files, remove leftovers")
    f.add_argument("--accept-store-loss", action="store_true",
                   help="with --repair: trust a store that lost acknowledged enrolments (they must be re-enrolled)")
    f.add_argument("--json", action="store_true")
    _key_arg(f)
    f.set_defaults(func=cmd_check)
    f = gsub.add_parser("backup", help="an online, consistent copy of a gallery into a new folder")
    f.add_argument("path", type=Path, metavar="PATH")
    f.add_argument("dest", type=Path, metavar="DEST")
    f.set_defaults(func=cmd_backup)
    f = gsub.add_parser("restore", help="restore a backup into a new folder (checksums verified first)")
    f.add_argument("backup", type=Path, metavar="BACKUP")
    f.add_argument("dest", type=Path, metavar="DEST")
    f.add_argument("--replace", action="store_true", help="move an existing gallery at DEST aside first")
    f.set_defaults(func=cmd_restore)
    gallery_import.add_parser(gsub)


def _key_arg(parser, text: str = "") -> None:
    parser.add_argument("--key-file", type=Path, metavar="FILE",
                        help=text or f"an encrypted gallery's key file (default: the key in {KEY_ENV})")


def key_of(args):
    """The KeyProvider the arguments name: ``--key-file``, else None (the library then reads
    ``BIOMATCH_GALLERY_KEY`` for an encrypted gallery)."""
    key_file = getattr(args, "key_file", None)
    return None if key_file is None else KeyFile(key_file)


def _enrolments(items: list, n_threads: int) -> list:
    """An Enrolment, or the BiomatchError its extraction raised, for each ``(subject, fingers,
    dpis)``; the window's images extracted ``n_threads`` at a time (the extraction's kernels
    release the GIL: two threads extract ~1.5x as many images per second as one)."""
    from ..extract import extract

    jobs = [(i, p, path, dpis[p]) for i, (_, fingers, dpis) in enumerate(items)
            for p, path in fingers.items() if p != FACE]
    if n_threads > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(n_threads, thread_name_prefix="biomatch-extract") as pool:
            futures = [pool.submit(extract, path, dpi=dpi) for _, _, path, dpi in jobs]
    else:
        futures = None
    prints: list[dict] = [{} for _ in items]
    errors: dict[int, BiomatchError] = {}
    for j, (i, p, path, dpi) in enumerate(jobs):
        try:
            prints[i][p] = futures[j].result() if futures is not None else extract(path, dpi=dpi)
        except BiomatchError as exc:
            errors.setdefault(i, exc)
    out: list = []
    for i, (subject, fingers, _) in enumerate(items):
        face = fingers.get(FACE)
        try:
            if i in errors:
                raise errors[i]
            out.append(Enrolment(subject, prints[i], face=None if face is None else str(face)))
        except BiomatchError as exc:
            out.append(exc)
    return out


def _line(report) -> str:
    """One tab-separated result line; ids are escaped (an id stored before ids were checked may
    hold a terminal escape or a bidi override)."""
    top = report.candidates[0] if report.candidates else None
    best = f"{printable_id(top.subject_id)}\t{top.score:.2f}" if top else "-\t-"
    return f"{printable_id(report.subject_id)}\t{report.decision}\t{'enrolled' if report.enrolled else '-'}\t{best}"


_DEDUP_BATCH = 8
"""Records whose images ``gallery dedup`` extracts together (read only: the batch changes no result)."""


def run_records(args, enrol: bool, opener=None) -> int:
    """``enroll`` (``enrol=True``) or ``dedup`` of ``args.source`` into the gallery at ``args.path``.

    ``opener(path, read_only)`` opens the gallery (default :meth:`Gallery.open`; the cluster
    commands pass one that opens a :class:`~biomatch.dedup.cluster.DistributedGallery`).
    Enrolment goes by windows of ``args.window`` records (:mod:`biomatch.dedup.pipeline`): their
    images extracted and their searches run ``args.threads`` at a time (searches in
    ``args.processes`` processes if given), decided and committed in order.
    """
    if is_transaction(args.source):
        return run_transaction(args, enrol, opener)
    records = read_input(args.source, args.dpi)
    counts: dict[str, int] = {}
    failed = skipped = 0
    window = getattr(args, "window", 1) if enrol else _DEDUP_BATCH
    with (opener or functools.partial(Gallery.open, key=key_of(args)))(args.path, read_only=not enrol) as g:
        bar = Progress(len(records), "enrol" if enrol else "dedup", args.quiet)
        print("subject\tdecision\tenrolled\tbest_candidate\tscore")
        for start in range(0, len(records), window):
            part = records[start:start + window]
            todo = [i for i, r in enumerate(part) if not (enrol and r[0] in g)]  # enrolled before: skipped
            made = dict(zip(todo, _enrolments([part[i] for i in todo], getattr(args, "threads", 1))))
            results = [(r[0], made.get(i)) for i, r in enumerate(part)]
            chunk = [what for _, what in results if isinstance(what, Enrolment)]
            done = iter(_run_chunk(g, chunk, enrol, args))
            for subject, what in results:
                res = next(done) if isinstance(what, Enrolment) else what
                if res is None or (enrol and isinstance(res, DuplicateSubjectError)):
                    skipped += 1  # enrolled before, or by another run of the manifest meanwhile: as resumed
                elif isinstance(res, BiomatchError):
                    failed += 1
                    print(f"{printable_id(subject)}\tERROR\t-\t{escape_unprintable(str(res))}", flush=True)
                else:
                    counts[res.decision] = counts.get(res.decision, 0) + 1
                    print(_line(res), flush=True)
            bar.update(min(start + window, len(records)))
        n = g.stats()["subjects"]
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"# {len(records)} records: {summary or 'none searched'}; skipped (already enrolled) {skipped}; "
          f"errors {failed}; gallery holds {n} subjects")
    return EXIT_INPUT if failed else EXIT_OK


_TRANSACTION_SUFFIXES = {".an2k", ".an2", ".eft", ".nist", ".int"}


def is_transaction(source: Path) -> bool:
    """An ANSI/NIST-ITL transaction: by its suffix, or a file that starts with the Type-1 tag."""
    source = Path(source)
    if not source.is_file():
        return False
    if source.suffix.lower() in _TRANSACTION_SUFFIXES:
        return True
    try:
        with open(source, "rb") as fh:
            return fh.read(6) == b"1.001:"
    except OSError:
        return False


def run_transaction(args, enrol: bool, opener=None) -> int:
    """One ten-print transaction: each intake step printed, then dedup (and enrolment)."""
    from ..dedup.tenprint import read_tenprint

    steps: list = []
    try:
        intake = read_tenprint(args.source, getattr(args, "subject", None), force=getattr(args, "force", False),
                               reorder=getattr(args, "reorder", False), steps_out=steps)
    except BiomatchError:
        for st in steps:
            print(escape_unprintable(str(st)), flush=True)
        raise
    for st in intake.steps:
        print(escape_unprintable(str(st)), flush=True)
    rec = intake.enrolment
    with (opener or functools.partial(Gallery.open, key=key_of(args)))(args.path, read_only=not enrol) as g:
        if enrol and rec.subject_id in g:
            print(f"dedup: skipped: {printable_id(rec.subject_id)} is already enrolled")
            return EXIT_OK
        report = g.enroll(rec, accept_review=args.accept_review) if enrol else g.deduplicate(rec)
        print(f"dedup: {report.decision}" + (", enrolled" if report.enrolled else ", not enrolled"))
        print("subject\tdecision\tenrolled\tbest_candidate\tscore")
        print(_line(report), flush=True)
        n = g.stats()["subjects"]
    print(f"# 1 transaction: {report.decision}; gallery holds {n} subjects")
    return EXIT_OK


def _run_chunk(g, chunk: list, enrol: bool, args) -> list:
    """Enrol (one pipelined window) or deduplicate the records of ``chunk``; a result per record."""
    if not chunk:
        return []
    if enrol:
        processes = getattr(args, "processes", 0)  # the cluster's writer actor has its own
        return g.enroll_many(chunk, accept_review=args.accept_review, stop_on_error=False,
                             window=max(1, len(chunk)), n_threads=getattr(args, "threads", 1),
                             **({"n_processes": processes} if processes else {}))
    processes = getattr(args, "processes", 0)
    return g.deduplicate_many(chunk, stop_on_error=False, **({"n_processes": processes} if processes else {}))


def cmd_create(args) -> int:
    key = key_of(args)
    if key is not None and not args.encrypt:
        raise InvalidInputError("--key-file: given without --encrypt (a gallery is encrypted only when asked)")
    if args.encrypt and key is None:
        if not os.environ.get(KEY_ENV):
            raise InvalidInputError(f"--encrypt: expected --key-file FILE or the variable {KEY_ENV} "
                                    f"(make a key file with: biomatch gallery new-key FILE)")
        key = KeyEnv()
    with Gallery.create(args.path, n_shards=args.shards, retrieval=args.retrieval,
                        decision=DecisionParams(enrol_min_quality=args.min_quality), key=key) as g:
        st = g.stats()
    enc = st["encryption"]
    how = f"encrypted ({enc['algorithm']}, key {enc['kek_id']})" if enc["encrypted"] else "NOT encrypted"
    print(f"created {args.path} (retrieval {st['retrieval']}, {st['shards']} shard(s), {how})")
    return EXIT_OK


def cmd_new_key(args) -> int:
    key_id = generate_key_file(args.file)
    print(f"wrote {args.file} (key {key_id}, mode 0600); keep a copy apart from the gallery and its backups: "
          f"without it an encrypted gallery cannot be read")
    return EXIT_OK


def cmd_info(args) -> int:
    m = _manifest.read_manifest(args.path)
    info = {"gallery_id": m["gallery_id"], "format_version": m["version"], "shards": m["n_shards"],
            "retrieval": m["retrieval"]["kind"], "counts_at_last_close": m.get("counts"),
            "encryption": describe_section(m.get("encryption"))}
    if args.json:
        print(json.dumps(info, indent=1, sort_keys=True))
        return EXIT_OK
    enc = info.pop("encryption")
    for k, v in info.items():
        print(f"{k}: {v}")
    if enc["encrypted"]:
        print(f"encryption: {enc['algorithm']}, key-encryption key {enc['kek_id']}, data keys "
              f"{', '.join(enc['data_keys'])} (active {enc['active_data_key']})"
              + (f"; re-encryption {enc['reencryption']}" if enc["reencryption"] else ""))
    else:
        print("encryption: none (templates are stored in clear; biomatch gallery create --encrypt for a registry)")
    return EXIT_OK


def cmd_rotate_key(args) -> int:
    key = key_of(args)
    if key is None:
        raise InvalidInputError("--key-file: expected the gallery's current key file")
    if args.new_key_file is None and not args.reencrypt:
        raise InvalidInputError("rotate-key: expected --new-key-file FILE, --reencrypt, or both")
    bar = None if args.quiet else (lambda shard, rows: print(f"\rshard {shard}: {rows} rows re-encrypted",
                                                            end="", file=sys.stderr, flush=True))
    out = rotate_key(args.path, key, None if args.new_key_file is None else KeyFile(args.new_key_file),
                     reencrypt=args.reencrypt, batch_size=args.batch, progress=bar)
    if bar is not None and args.reencrypt:
        print(file=sys.stderr)
    print(f"{args.path}: key-encryption key {out['kek_id']}" + (" (data keys re-wrapped)" if out["rewrapped"] else "")
          + f"; data keys {', '.join(out['data_keys'])}, active {out['active_data_key']}"
          + (f"; {out['reencrypted_rows']} rows re-encrypted" if args.reencrypt else ""))
    return EXIT_OK


def print_stats(st: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(st, indent=1, sort_keys=True))
    else:
        for k, v in st.items():
            print(f"{k}: {v}")


def cmd_stats(args) -> int:
    with Gallery.open(args.path, read_only=True, key=key_of(args)) as g:
        st = g.stats()
    print_stats(st, args.json)
    return EXIT_OK


def print_added(path, n: int, st: dict) -> None:
    print(f"{path}: {n} shards (routing epochs {st['routing_epochs']}); new subjects go to all {n}, "
          f"the {st['subjects']} enrolled stay where they are")


def cmd_add_shard(args) -> int:
    with Gallery.open(args.path, key=key_of(args)) as g:
        n = g.add_shard()
        print_added(args.path, n, g.stats())
    return EXIT_OK


def cmd_check(args) -> int:
    report = check_gallery(args.path, repair=args.repair, accept_store_loss=args.accept_store_loss, key=key_of(args))
    if args.json:
        print(json.dumps(report.as_dict(), indent=1, sort_keys=True))
    else:
        for p in report.problems:
            print(f"PROBLEM {escape_unprintable(p)}")
        for r in report.repaired:
            print(f"REPAIRED {escape_unprintable(r)}")
        for u in report.unrepaired:
            print(f"NEEDS AN OPERATOR {escape_unprintable(u)}")
        state = "sound" if report.ok and not report.problems else "repaired" if report.ok else "NOT SOUND"
        enc = report.encryption
        print(f"encryption: {enc['algorithm']}, key {enc['kek_id']}, every sealed record authenticated"
              if enc["encrypted"] else "encryption: none")
        print(f"{args.path}: {state} ({report.subjects} subjects, {report.fingers} fingers)")
    return EXIT_OK if report.ok else 1  # documented: 1 = the gallery is not sound


def cmd_backup(args) -> int:
    doc = backup_gallery(args.path, args.dest)
    size = sum(f["bytes"] for f in doc["files"].values())
    print(f"backed up {args.path} to {args.dest}: {len(doc['shards'])} shard(s), {len(doc['files'])} files, "
          f"{size / 2**20:.1f} MiB (SHA-256 of each in backup.json)")
    return EXIT_OK


def cmd_restore(args) -> int:
    aside = restore_gallery(args.backup, args.dest, replace=args.replace)
    print(f"restored {args.backup} to {args.dest}" + (f" (the gallery there was moved to {aside})"
                                                        if aside != args.dest else ""))
    return EXIT_OK
