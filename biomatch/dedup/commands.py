"""Command-line front end of the gallery (``biomatch gallery ...``, ``biomatch demo dedup``).

Commands::

    biomatch gallery create PATH [--retrieval faiss|exhaustive] [--shards N]
    biomatch gallery enroll PATH FOLDER_OR_MANIFEST [--dpi N] [--quiet]
    biomatch gallery dedup PATH FOLDER_OR_MANIFEST [--dpi N] [--quiet]
    biomatch gallery stats PATH [--json]
    biomatch gallery add-shard PATH                    one more shard; nothing already enrolled moves
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
may contain underscores), or a CSV manifest ``subject_id,position,path[,dpi]`` (an optional
header row; relative paths are relative to the manifest).  A face image is the position
``face`` (``<subject>_face.jpg``, or a manifest row ``subject,face,path``); at enrolment it
must pass the face quality gate.  ``enroll`` is resumable: subjects
already enrolled are skipped.  One line per record goes to stdout, a progress bar to stderr.
A record that fails (unreadable image, no usable finger) is reported and the run goes on; the
exit code is then 2.

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


def read_input(source: Path, dpi: float | None) -> list[tuple[str, dict, dict]]:
    """Records of a folder or CSV manifest: ``[(subject_id, {position: path}, {position: dpi})]``.

    Raises
    ------
    InvalidInputError
        Missing source, bad names or rows, a position given twice, no dpi.
    """
    from ..errors import invalid

    source = Path(source)
    rows: list[tuple[str, int, Path, float | None]] = []
    if source.is_dir():
        for f in sorted(source.iterdir()):
            if f.suffix.lower() not in _IMAGE_EXTS:
                continue
            subject, _, pos = f.stem.rpartition("_")
            if not subject or not (pos.isdigit() or pos.lower() == _FACE):
                raise invalid("FOLDER", "image names <subject>_<position 1-10 or 'face'>.<ext>", f.name)
            rows.append((subject, _FACE if pos.lower() == _FACE else int(pos), f, None))
    elif source.is_file():
        try:
            with open(source, newline="") as fh:
                for i, row in enumerate(csv.reader(fh)):
                    if not row or (i == 0 and len(row) > 1 and not row[1].strip().isdigit()
                                   and row[1].strip().lower() != _FACE):
                        continue  # a header row
                    if len(row) not in (3, 4):
                        raise invalid("MANIFEST", "rows subject_id,position,path[,dpi]", f"line {i + 1}: {row}")
                    try:
                        pos = _FACE if row[1].strip().lower() == _FACE else int(row[1])
                        rdpi = float(row[3]) if len(row) == 4 and row[3].strip() else None
                    except ValueError:
                        raise invalid("MANIFEST", "an integer position and a numeric dpi", f"line {i + 1}: {row}")
                    path = Path(row[2].strip())
                    rows.append((row[0].strip(), pos, path if path.is_absolute() else source.parent / path, rdpi))
        except (OSError, UnicodeDecodeError) as exc:
            raise invalid("MANIFEST", "a readable CSV file", f"{source} ({exc})") from exc
    else:
        raise invalid("FOLDER_OR_MANIFEST", "a folder of images or a CSV manifest", str(source))
    records: dict[str, tuple[dict, dict]] = {}
    for subject, pos, path, rdpi in rows:
        if pos == _FACE:
            fingers, _ = records.setdefault(subject, ({}, {}))
            if _FACE in fingers:
                raise invalid("face", f"one face image per subject ({subject!r})", path.name)
            fingers[_FACE] = path
            continue
        if not 1 <= pos <= 10:
            raise invalid("position", "an ISO finger position 1-10", f"{pos} ({path.name})")
        fingers, dpis = records.setdefault(subject, ({}, {}))
        if pos in fingers:
            raise invalid("position", f"each position once per subject ({subject!r})", pos)
        use = rdpi if rdpi is not None else dpi
        if use is None:
            raise invalid("--dpi", "a resolution (or a dpi column in the manifest)", None)
        fingers[pos], dpis[pos] = path, use
    return [(s, f, d) for s, (f, d) in records.items()]


def _enrolment(subject: str, fingers: dict, dpis: dict):
    from ..extract import extract
    from .records import Enrolment

    face = fingers.get(_FACE)
    return Enrolment(subject, {p: extract(path, dpi=dpis[p]) for p, path in fingers.items() if p != _FACE},
                     face=None if face is None else str(face))


def _line(report) -> str:
    top = report.candidates[0] if report.candidates else None
    best = f"{top.subject_id}\t{top.score:.2f}" if top else "-\t-"
    return f"{report.subject_id}\t{report.decision}\t{'enrolled' if report.enrolled else '-'}\t{best}"


def _run(args, enrol: bool, opener=None) -> int:
    from ..errors import BiomatchError
    from .gallery import Gallery

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
                failed += 1
                print(f"{subject}\tERROR\t-\t{exc}", flush=True)
            finally:
                bar.update(i + 1)
        n = g.stats()["subjects"]
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"# {len(records)} records: {summary or 'none searched'}; skipped (already enrolled) {skipped}; "
          f"errors {failed}; gallery holds {n} subjects")
    return 2 if failed else 0


def cmd_create(args) -> int:
    from .gallery import Gallery

    with Gallery.create(args.path, n_shards=args.shards, retrieval=args.retrieval) as g:
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
