"""Command-line front end of the gallery (``biomatch gallery ...``, ``biomatch demo dedup``).

Commands::

    biomatch gallery create PATH [--retrieval faiss|exhaustive] [--shards N] [--min-quality Q]
    biomatch gallery enroll PATH FOLDER_OR_MANIFEST [--dpi N] [--quiet]
    biomatch gallery dedup PATH FOLDER_OR_MANIFEST [--dpi N] [--quiet]
    biomatch gallery stats PATH [--json]
    biomatch gallery add-shard PATH                    one more shard; nothing already enrolled moves
    biomatch gallery check PATH [--repair [--accept-store-loss]] [--json]   exit 1 when not sound
    biomatch gallery backup PATH DEST                  online, consistent copy (writers wait)
    biomatch gallery restore BACKUP DEST [--replace]   every file's SHA-256 checked first
    biomatch demo dedup [--datasets DIR] [--out DIR]
    biomatch cluster start [--cpus N] [--port P]       a Ray head on this machine (needs '.[cluster]')
    biomatch cluster create PATH [--shards N] [--retrieval R] [--address A]
    biomatch cluster enroll|dedup PATH FOLDER_OR_MANIFEST [--address A] [...as gallery]
    biomatch cluster stats PATH [--address A] [--json]
    biomatch cluster add-shard PATH [--address A]      one more shard actor (by the writer actor)
    biomatch cluster release PATH [--address A]        stop the gallery's actors (index files saved)
    biomatch cluster stop                              stop Ray on this machine

``cluster`` runs the same gallery folder with its shards as Ray actors
(:class:`biomatch.dedup.cluster.DistributedGallery`); ``--address`` defaults to ``auto`` (the
cluster started by ``cluster start``); ``local`` starts a private one for the command.

Input: a folder of images named ``<subject>_<position>.<ext>`` (ISO position 1-10; the subject
may contain underscores), or a UTF-8 CSV manifest ``subject_id,position,path[,dpi]`` (relative
paths are relative to the manifest).  The manifest may start with a header row, recognised by
the name of its second column (``position``, ``pos``, ``finger``, ``finger_position`` or
``fgp``, any case); every other row is data.  A face image is the position ``face``
(``<subject>_face.jpg``, or a manifest row ``subject,face,path``); at enrolment it must pass the
face quality gate.

Every file name or row is checked before anything is searched or enrolled: a bad one (a
position that is not 1-10 or ``face``, a blank or unsafe subject id, a NUL character, a field
over the CSV limit of 131,072 characters, a bad dpi, a position given twice) stops the run with
one error line naming the file, or the line and column, and exit code 2.

``enroll`` is resumable: subjects already enrolled are skipped, including those that another
run of the same manifest enrolls meanwhile (two runs may go concurrently).  One line per record
goes to stdout (ids escaped: non-printable characters as ``\\x..`` / ``\\u....``), a progress
bar to stderr.  A record that fails (unreadable image, no usable finger) is reported and the
run goes on; the exit code is then 2.

Heavy modules are imported inside the commands, so that ``biomatch --help`` stays fast.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["add_parsers", "read_input", "Progress"]

_FACE = "face"  # the "position" of a face image in folder names and manifests

_IMAGE_EXTS = {".png", ".tif", ".tiff", ".bmp", ".pgm", ".jpg", ".jpeg", ".wsq"}


class Progress:
    """Progress on stderr: a one-line bar on a terminal; in a log (not a terminal) one line
    per tenth of the work; nothing when ``quiet``."""

    def __init__(self, total: int, label: str, quiet: bool = False, width: int = 30):
        self.total, self.label, self.quiet, self.width = max(total, 1), label, quiet, width
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        self._logged = -1

    def update(self, done: int) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if not self._tty:
            tenth = 10 * done // self.total
            if tenth > self._logged:
                self._logged = tenth
                rate = done / max(now - self.t0, 1e-9)
                sys.stderr.write(f"{self.label} {done}/{self.total} ({rate:.1f}/s)\n")
            return
        if done < self.total and now - self._last < 0.2:
            return
        self._last = now
        frac = done / self.total
        bar = "#" * int(frac * self.width)
        rate = done / max(now - self.t0, 1e-9)
        sys.stderr.write(f"\r{self.label} [{bar:<{self.width}}] {done}/{self.total} {rate:.1f}/s")
        if done >= self.total:
            sys.stderr.write(f" {now - self.t0:.1f} s\n")
        sys.stderr.flush()


# Words naming the position column of a manifest's header row (compared in lower case, without
# spaces, '_' or '-'). The header is recognised by its names, never by a first row that fails to
# parse: such a row is data with an error, reported with its line.
_HEADER_POSITION_NAMES = frozenset({"position", "pos", "finger", "fingerposition", "fingerpos", "fgp"})
_COLUMNS = ("subject_id", "position", "path", "dpi")
_ROW = "subject_id,position,path[,dpi]"


def _is_header(row: list[str]) -> bool:
    return len(row) > 1 and "".join(ch for ch in row[1].lower() if ch.isalnum()) in _HEADER_POSITION_NAMES


def _row_error(where: str, column: str | None, expected: str, actual: str):
    """The error of one manifest row or folder file: where, which column, expected, actual."""
    from ..errors import InvalidInputError
    from .records import escape_unprintable

    shown = escape_unprintable(actual)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    field = f", {column}" if column else ""
    return InvalidInputError(f"{where}{field}: expected {expected}, got '{shown}'")


def _parse_position(text: str, where: str):
    """An ISO finger position 1-10 or ``"face"``, else a row error naming ``where``."""
    value = text.strip()
    if value.lower() == _FACE:
        return _FACE
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= 10):
        raise _row_error(where, "position", "an ISO finger position 1-10 or 'face'", value)
    return int(value)


def _checked_subject(text: str, where: str) -> str:
    from ..errors import InvalidInputError
    from .records import _check_subject_id

    try:
        return _check_subject_id(text)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}, {exc}") from None


def _read_manifest(source: Path) -> list[tuple[str, object, Path, float | None, str]]:
    """Rows ``(subject, position, path, dpi or None, "MANIFEST line N")`` of a CSV manifest.

    The whole file is checked before anything is enrolled: the first bad row raises, naming its
    line (the physical line where the row ends) and column.
    """
    import math

    from ..errors import InvalidInputError, invalid

    rows = []
    try:
        with open(source, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            first = True
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:  # e.g. "field larger than field limit (131072)"
                    raise InvalidInputError(
                        f"MANIFEST line {reader.line_num}: expected a CSV row {_ROW} with fields of "
                        f"at most {csv.field_size_limit()} characters, got a row the CSV reader refuses "
                        f"({exc})") from None
                where = f"MANIFEST line {reader.line_num}"
                if not row:
                    continue
                if first:
                    first = False
                    if _is_header(row):
                        continue
                for name, x in zip(_COLUMNS, row):
                    if "\0" in x:
                        raise _row_error(where, name, "no NUL character", x)
                if len(row) not in (3, 4):
                    raise _row_error(where, None, f"3 or 4 columns {_ROW} (an optional first row naming them)",
                                     ",".join(row))
                subject = _checked_subject(row[0].strip(), where)
                pos = _parse_position(row[1], where)
                rdpi = None
                if len(row) == 4 and row[3].strip():
                    try:
                        rdpi = float(row[3])
                    except ValueError:
                        rdpi = -1.0
                    if not (math.isfinite(rdpi) and rdpi > 0):
                        raise _row_error(where, "dpi", "a positive number of dots per inch or nothing", row[3])
                if not row[2].strip():
                    raise _row_error(where, "path", "an image file name", row[2])
                path = Path(row[2].strip())
                rows.append((subject, pos, path if path.is_absolute() else source.parent / path, rdpi, where))
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid("MANIFEST", "a readable UTF-8 CSV file", f"{source} ({exc})") from exc
    return rows


def read_input(source: Path, dpi: float | None) -> list[tuple[str, dict, dict]]:
    """Records of a folder or CSV manifest: ``[(subject_id, {position: path}, {position: dpi})]``.

    A manifest's first row is a header when its second column is named ``position`` (or
    ``pos``, ``finger``, ``finger_position``, ``fgp``; any case); any other row is data.  Every
    row is checked before anything is enrolled.

    Raises
    ------
    InvalidInputError
        Missing source; a bad file name or row (the message names the file, or the line and
        the column): a position that is not 1-10 or ``face``, an unsafe or blank subject id, a
        NUL character, a field over the CSV field limit (131,072 characters), a bad dpi; a
        position given twice; no dpi.
    """
    from ..errors import invalid
    from .records import escape_unprintable

    source = Path(source)
    rows: list[tuple[str, object, Path, float | None, str]] = []
    if source.is_dir():
        for f in sorted(source.iterdir()):
            if f.suffix.lower() not in _IMAGE_EXTS:
                continue
            subject, _, pos = f.stem.rpartition("_")
            if not subject or not ((pos.isascii() and pos.isdigit()) or pos.lower() == _FACE):
                raise invalid("FOLDER", "image names <subject>_<position 1-10 or 'face'>.<ext>", f.name)
            where = f"FOLDER file '{escape_unprintable(f.name)}'"
            rows.append((_checked_subject(subject, where), _parse_position(pos, where), f, None, where))
    elif source.is_file():
        rows = _read_manifest(source)
    else:
        raise invalid("FOLDER_OR_MANIFEST", "a folder of images or a CSV manifest", str(source))
    records: dict[str, tuple[dict, dict]] = {}
    for subject, pos, path, rdpi, where in rows:
        fingers, dpis = records.setdefault(subject, ({}, {}))
        if pos in fingers:
            what = "one face image" if pos == _FACE else "each position once"
            raise _row_error(where, "position", f"{what} per subject ({subject!r})", str(pos))
        fingers[pos] = path
        if pos == _FACE:
            continue
        use = rdpi if rdpi is not None else dpi
        if use is None:
            raise invalid("--dpi", "a resolution (or a dpi column in the manifest)", None)
        dpis[pos] = use
    return [(s, f, d) for s, (f, d) in records.items()]


def _enrolment(subject: str, fingers: dict, dpis: dict):
    from ..extract import extract
    from .records import Enrolment

    face = fingers.get(_FACE)
    return Enrolment(subject, {p: extract(path, dpi=dpis[p]) for p, path in fingers.items() if p != _FACE},
                     face=None if face is None else str(face))


def _line(report) -> str:
    """One tab-separated result line; ids are escaped (an id stored before ids were checked may
    hold a terminal escape or a bidi override)."""
    from .records import printable_id

    top = report.candidates[0] if report.candidates else None
    best = f"{printable_id(top.subject_id)}\t{top.score:.2f}" if top else "-\t-"
    return f"{printable_id(report.subject_id)}\t{report.decision}\t{'enrolled' if report.enrolled else '-'}\t{best}"


def _run(args, enrol: bool, opener=None) -> int:
    from ..errors import BiomatchError, DuplicateSubjectError
    from .gallery import Gallery
    from .records import escape_unprintable, printable_id

    records = read_input(args.source, args.dpi)
    counts: dict[str, int] = {}
    failed = skipped = 0
    with (opener or Gallery.open)(args.path, read_only=not enrol) as g:
        bar = Progress(len(records), "enrol" if enrol else "dedup", args.quiet)
        print("subject\tdecision\tenrolled\tbest_candidate\tscore")
        for i, (subject, fingers, dpis) in enumerate(records):
            try:
                if enrol and subject in g:
                    skipped += 1
                    continue
                rec = _enrolment(subject, fingers, dpis)
                report = g.enroll(rec, accept_review=args.accept_review) if enrol else g.deduplicate(rec)
                counts[report.decision] = counts.get(report.decision, 0) + 1
                print(_line(report), flush=True)
            except BiomatchError as exc:
                if enrol and isinstance(exc, DuplicateSubjectError):
                    skipped += 1  # another run of the manifest enrolled it after our check: as resumed
                    continue
                failed += 1
                print(f"{printable_id(subject)}\tERROR\t-\t{escape_unprintable(str(exc))}", flush=True)
            finally:
                bar.update(i + 1)
        n = g.stats()["subjects"]
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"# {len(records)} records: {summary or 'none searched'}; skipped (already enrolled) {skipped}; "
          f"errors {failed}; gallery holds {n} subjects")
    return 2 if failed else 0


def cmd_create(args) -> int:
    from .gallery import Gallery

    from ..decide import DecisionParams

    with Gallery.create(args.path, n_shards=args.shards, retrieval=args.retrieval,
                        decision=DecisionParams(enrol_min_quality=args.min_quality)) as g:
        st = g.stats()
    print(f"created {args.path} (retrieval {st['retrieval']}, {st['shards']} shard(s))")
    return 0


def _print_stats(st: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(st, indent=1, sort_keys=True))
    else:
        for k, v in st.items():
            print(f"{k}: {v}")


def cmd_stats(args) -> int:
    from .gallery import Gallery

    with Gallery.open(args.path, read_only=True) as g:
        st = g.stats()
    _print_stats(st, args.json)
    return 0


def _print_added(path, n: int, st: dict) -> None:
    print(f"{path}: {n} shards (routing epochs {st['routing_epochs']}); new subjects go to all {n}, "
          f"the {st['subjects']} enrolled stay where they are")


def cmd_add_shard(args) -> int:
    from .gallery import Gallery

    with Gallery.open(args.path) as g:
        n = g.add_shard()
        _print_added(args.path, n, g.stats())
    return 0


def cmd_check(args) -> int:
    from .maintenance import check_gallery
    from .records import escape_unprintable

    report = check_gallery(args.path, repair=args.repair, accept_store_loss=args.accept_store_loss)
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
        print(f"{args.path}: {state} ({report.subjects} subjects, {report.fingers} fingers)")
    return 0 if report.ok else 1


def cmd_backup(args) -> int:
    from .maintenance import backup_gallery

    doc = backup_gallery(args.path, args.dest)
    size = sum(f["bytes"] for f in doc["files"].values())
    print(f"backed up {args.path} to {args.dest}: {len(doc['shards'])} shard(s), {len(doc['files'])} files, "
          f"{size / 2**20:.1f} MiB (SHA-256 of each in backup.json)")
    return 0


def cmd_restore(args) -> int:
    from .maintenance import restore_gallery

    aside = restore_gallery(args.backup, args.dest, replace=args.replace)
    print(f"restored {args.backup} to {args.dest}" + (f" (the gallery there was moved to {aside})"
                                                        if aside != args.dest else ""))
    return 0


def cmd_cluster_add_shard(args) -> int:
    from .cluster import DistributedGallery

    with DistributedGallery.open(args.path, address=_address(args)) as g:
        n = g.add_shard()
        _print_added(args.path, n, g.stats())
    return 0


def _address(args):
    return None if args.address == "local" else args.address


def _cluster_open(args):
    from .cluster import DistributedGallery

    return lambda path, read_only: DistributedGallery.open(path, address=_address(args), read_only=read_only)


def _ray_cli() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.exists() else "ray"


def cmd_cluster_start(args) -> int:
    import subprocess

    from .cluster import _ray

    _ray()  # a clear error when the extra is missing
    cmd = [_ray_cli(), "start", "--head", f"--port={args.port}", f"--num-cpus={args.cpus}",
           "--include-dashboard=false", "--disable-usage-stats", '--resources={"biomatch_gallery": 1}']
    code = subprocess.call(cmd)
    if code == 0:
        print(f"# head started: shard actors use 1 CPU each, so --cpus should be >= the shards on this node.\n"
              f"# on another machine, to host shard 1 (its folder shards/001 under the same path):\n"
              f"#   ray start --address=<this host>:{args.port} --num-cpus=1 "
              f"--resources='{{\"biomatch_shard_001\": 1}}'")
    return code


def cmd_cluster_stop(args) -> int:
    import subprocess

    return subprocess.call([_ray_cli(), "stop"] + (["--force"] if args.force else []))


def cmd_cluster_create(args) -> int:
    from .cluster import DistributedGallery

    with DistributedGallery.create(args.path, address=_address(args), n_shards=args.shards,
                                   retrieval=args.retrieval) as g:
        st = g.stats()
    print(f"created {args.path} (retrieval {st['retrieval']}, {st['shards']} shard actor(s), "
          f"pids {st['cluster']['shard_pids']})")
    return 0


def cmd_cluster_stats(args) -> int:
    from .cluster import DistributedGallery

    with DistributedGallery.open(args.path, address=_address(args), read_only=True) as g:
        st = g.stats()
    _print_stats(st, args.json)
    return 0


def cmd_cluster_release(args) -> int:
    from .cluster import release_actors

    print(f"stopped {release_actors(args.path, address=_address(args))} actor(s)")
    return 0


def _add_cluster_parser(sub, int_type, dpi_type) -> None:
    p = sub.add_parser("cluster", help="the gallery with its shards as Ray actors (extra 'cluster')",
                       description="Run a gallery folder on a Ray cluster: one actor per shard, scatter-gather "
                                   "searches, enrolments serialised by one writer actor. Needs pip install "
                                   "'biomatch[cluster]'.")
    csub = p.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    f = csub.add_parser("start", help="start a Ray head on this machine")
    f.add_argument("--cpus", type=int_type, default=os.cpu_count() or 1, help="logical CPUs (default: all)")
    f.add_argument("--port", type=int_type, default=6379)
    f.set_defaults(func=cmd_cluster_start)
    f = csub.add_parser("stop", help="stop Ray on this machine (ray stop)")
    f.add_argument("--force", action="store_true")
    f.set_defaults(func=cmd_cluster_stop)

    def address(f):
        f.add_argument("--address", default="auto",
                       help="Ray address (default auto: the running cluster; local: a private one)")

    f = csub.add_parser("create", help="create a gallery folder and start its actors")
    f.add_argument("path", type=Path, metavar="PATH")
    f.add_argument("--retrieval", choices=["faiss", "exhaustive"], default="faiss")
    f.add_argument("--shards", type=int_type, default=2, help="shard actors (default 2)")
    address(f)
    f.set_defaults(func=cmd_cluster_create)
    for name, enrol, text in (("enroll", True, "deduplicate and enrol each subject on the cluster"),
                              ("dedup", False, "deduplicate each subject on the cluster (read only)")):
        f = csub.add_parser(name, help=text, description=text + " (input as for 'biomatch gallery').")
        f.add_argument("path", type=Path, metavar="PATH")
        f.add_argument("source", type=Path, metavar="FOLDER_OR_MANIFEST")
        f.add_argument("--dpi", type=dpi_type)
        f.add_argument("--quiet", action="store_true")
        if enrol:
            f.add_argument("--accept-review", action="store_true")
        address(f)
        f.set_defaults(func=lambda a, e=enrol: _run(a, e, _cluster_open(a)), accept_review=False)
    f = csub.add_parser("stats", help="counts, memory, thresholds, actor pids")
    f.add_argument("path", type=Path, metavar="PATH")
    f.add_argument("--json", action="store_true")
    address(f)
    f.set_defaults(func=cmd_cluster_stats)
    f = csub.add_parser("add-shard", help="add a shard actor; nothing already enrolled moves")
    f.add_argument("path", type=Path, metavar="PATH")
    address(f)
    f.set_defaults(func=cmd_cluster_add_shard)
    f = csub.add_parser("release", help="stop the gallery's actors (after saving their index files)")
    f.add_argument("path", type=Path, metavar="PATH")
    address(f)
    f.set_defaults(func=cmd_cluster_release)


def cmd_demo_dedup(args) -> int:
    from .demo import run_demo

    return run_demo(args.datasets, args.out, quiet=args.quiet)


def add_parsers(sub, dpi_type, int_type) -> None:
    """Add ``gallery`` and ``demo`` to the ``biomatch`` sub-command parser."""
    p = sub.add_parser("gallery", help="a durable 1:N gallery: create, enrol, deduplicate, stats",
                       description="Create a gallery, enrol a folder or manifest (resumable), deduplicate, stats.")
    gsub = p.add_subparsers(dest="gallery_command", required=True, metavar="ACTION")
    f = gsub.add_parser("create", help="create a gallery in a new or empty folder")
    f.add_argument("path", type=Path, metavar="PATH")
    f.add_argument("--retrieval", choices=["faiss", "exhaustive"], default="faiss",
                   help="candidate retrieval (default faiss)")
    f.add_argument("--shards", type=int_type, default=1, help="partitions (default 1)")
    f.add_argument("--min-quality", type=int_type, default=0, metavar="Q",
                   help="refuse enrolments with a finger of print quality below Q (0-100; default 0: none)")
    f.set_defaults(func=cmd_create)
    for name, enrol, text in (("enroll", True, "deduplicate and enrol each subject (skips enrolled ones)"),
                              ("dedup", False, "deduplicate each subject against the gallery (read only)")):
        f = gsub.add_parser(name, help=text, description=text + ". Input: a folder of <subject>_<position>.<ext> "
                            "images or a CSV manifest subject_id,position,path[,dpi].")
        f.add_argument("path", type=Path, metavar="PATH")
        f.add_argument("source", type=Path, metavar="FOLDER_OR_MANIFEST")
        f.add_argument("--dpi", type=dpi_type, help="resolution of the images (unless given per manifest row)")
        f.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
        if enrol:
            f.add_argument("--accept-review", action="store_true", help="enrol records whose decision is REVIEW")
        f.set_defaults(func=lambda a, e=enrol: _run(a, e), accept_review=False)
    f = gsub.add_parser("stats", help="counts, memory, disk, thresholds")
    f.add_argument("path", type=Path, metavar="PATH")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=cmd_stats)
    f = gsub.add_parser("add-shard", help="add a shard: new subjects are spread over all shards, "
                        "enrolled ones never move")
    f.add_argument("path", type=Path, metavar="PATH")
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

    p = sub.add_parser("demo", help="end-to-end demonstrations",
                       description="End-to-end demonstrations on shared or generated data.")
    dsub = p.add_subparsers(dest="demo_command", required=True, metavar="DEMO")
    f = dsub.add_parser("dedup", help="enrol a registry, deduplicate a stream, report FNIR/FPIR and timings",
                        description="SOCOFing (DIR/socofing) when present: real prints of subjects 1-200 "
                                    "enrolled, altered-hard prints of 1-200 (returning) and 201-300 (new) searched; "
                                    "otherwise generated identities (2,000 enrolled, 200 returning, 200 new).")
    f.add_argument("--datasets", type=Path, default=None, metavar="DIR",
                   help="shared datasets folder (default $BIOMATCH_DATASETS or ../shared/datasets)")
    f.add_argument("--out", type=Path, default=Path("out/demo_dedup"), metavar="DIR",
                   help="gallery and template cache (default out/demo_dedup)")
    f.add_argument("--quiet", action="store_true", help="no progress bars on stderr")
    f.set_defaults(func=cmd_demo_dedup)

    _add_cluster_parser(sub, int_type, dpi_type)
