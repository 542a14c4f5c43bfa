"""``biomatch cluster ...``: a gallery folder with its shards as Ray actors (extra ``cluster``).

Commands::

    biomatch cluster start [--cpus N] [--port P]       a Ray head on this machine (needs '.[cluster]')
    biomatch cluster create PATH [--shards N] [--retrieval R] [--address A]
    biomatch cluster enroll|dedup PATH FOLDER_OR_MANIFEST [--address A] [...as gallery]
    biomatch cluster stats PATH [--address A] [--json]
    biomatch cluster add-shard PATH [--address A]      one more shard actor (by the writer actor)
    biomatch cluster release PATH [--address A]        stop the gallery's actors (index files saved)
    biomatch cluster stop                              stop Ray on this machine

The gallery is :class:`biomatch.dedup.cluster.DistributedGallery`; ``enroll`` and ``dedup`` read
their input and print their results exactly as ``biomatch gallery`` does. ``--address``
defaults to ``auto`` (the cluster started by ``cluster start``); ``local`` starts a private one
for the command.

:mod:`biomatch.dedup.cluster` (and through it Ray, an optional extra) is imported inside the
commands, so that the embedded gallery's commands never load it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..errors import BiomatchError
from ._common import EXIT_OK, dpi, int_in, positive_int
from .gallery import print_added, print_stats, run_records

__all__ = ["add_parsers"]


def add_parsers(sub) -> None:
    """Add ``cluster`` and its actions to the top-level sub-parsers."""
    p = sub.add_parser("cluster", help="the gallery with its shards as Ray actors (extra 'cluster')",
                       description="Run a gallery folder on a Ray cluster: one actor per shard, scatter-gather "
                                   "searches, enrolments serialised by one writer actor. Needs pip install "
                                   "'biomatch[cluster]'.")
    csub = p.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    f = csub.add_parser("start", help="start a Ray head on this machine")
    f.add_argument("--cpus", type=positive_int, default=os.cpu_count() or 1, help="logical CPUs (default: all)")
    f.add_argument("--port", type=positive_int, default=6379)
    f.set_defaults(func=cmd_start)
    f = csub.add_parser("stop", help="stop Ray on this machine (ray stop)")
    f.add_argument("--force", action="store_true")
    f.set_defaults(func=cmd_stop)

    def address(f):
        f.add_argument("--address", default="auto",
                       help="Ray address (default auto: the running cluster; local: a private one)")

    f = csub.add_parser("create", help="create a gallery folder and start its actors")
    f.add_argument("path", type=Path, metavar="PATH")
    f.add_argument("--retrieval", choices=["faiss", "exhaustive"], default="faiss")
    f.add_argument("--shards", type=positive_int, default=2, help="shard actors (default 2)")
    address(f)
    f.set_defaults(func=cmd_create)
    for name, enrol, text in (("enroll", True, "deduplicate and enrol each subject on the cluster"),
                              ("dedup", False, "deduplicate each subject on the cluster (read only)")):
        f = csub.add_parser(name, help=text, description=text + " (input as for 'biomatch gallery').")
        f.add_argument("path", type=Path, metavar="PATH")
        f.add_argument("source", type=Path, metavar="FOLDER_OR_MANIFEST")
        f.add_argument("--dpi", type=dpi)
        f.add_argument("--quiet", action="store_true")
        if enrol:
            f.add_argument("--accept-review", action="store_true")
            f.add_argument("--window", type=int_in(1, 4096), default=8,
                           help="records searched together by the writer actor, then committed in order (default 8)")
            f.add_argument("--threads", type=int_in(1, 256), default=2, help="searches run at once (default 2)")
        address(f)
        f.set_defaults(func=lambda a, e=enrol: run_records(a, e, _opener(a)), accept_review=False)
    f = csub.add_parser("stats", help="counts, memory, thresholds, actor pids")
    f.add_argument("path", type=Path, metavar="PATH")
    f.add_argument("--json", action="store_true")
    address(f)
    f.set_defaults(func=cmd_stats)
    f = csub.add_parser("add-shard", help="add a shard actor; nothing already enrolled moves")
    f.add_argument("path", type=Path, metavar="PATH")
    address(f)
    f.set_defaults(func=cmd_add_shard)
    f = csub.add_parser("release", help="stop the gallery's actors (after saving their index files)")
    f.add_argument("path", type=Path, metavar="PATH")
    address(f)
    f.set_defaults(func=cmd_release)


def _address(args):
    return None if args.address == "local" else args.address


def _opener(args):
    from ..dedup.cluster import DistributedGallery

    return lambda path, read_only: DistributedGallery.open(path, address=_address(args), read_only=read_only)


def _ray_cli() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.exists() else "ray"


def cmd_start(args) -> int:
    try:  # a clear error when the extra is missing
        import ray  # noqa: F401
    except ImportError as exc:
        raise BiomatchError("the distributed gallery needs Ray: pip install 'biomatch[cluster]'") from exc
    cmd = [_ray_cli(), "start", "--head", f"--port={args.port}", f"--num-cpus={args.cpus}",
           "--include-dashboard=false", "--disable-usage-stats", '--resources={"biomatch_gallery": 1}']
    code = subprocess.call(cmd)
    if code == 0:
        print(f"# head started: shard actors use 1 CPU each, so --cpus should be >= the shards on this node.\n"
              f"# on another machine, to host shard 1 (its folder shards/001 under the same path):\n"
              f"#   ray start --address=<this host>:{args.port} --num-cpus=1 "
              f"--resources='{{\"biomatch_shard_001\": 1}}'")
    return code


def cmd_stop(args) -> int:
    return subprocess.call([_ray_cli(), "stop"] + (["--force"] if args.force else []))


def cmd_create(args) -> int:
    from ..dedup.cluster import DistributedGallery

    with DistributedGallery.create(args.path, address=_address(args), n_shards=args.shards,
                                   retrieval=args.retrieval) as g:
        st = g.stats()
    print(f"created {args.path} (retrieval {st['retrieval']}, {st['shards']} shard actor(s), "
          f"pids {st['cluster']['shard_pids']})")
    return EXIT_OK


def cmd_stats(args) -> int:
    from ..dedup.cluster import DistributedGallery

    with DistributedGallery.open(args.path, address=_address(args), read_only=True) as g:
        st = g.stats()
    print_stats(st, args.json)
    return EXIT_OK


def cmd_add_shard(args) -> int:
    from ..dedup.cluster import DistributedGallery

    with DistributedGallery.open(args.path, address=_address(args)) as g:
        n = g.add_shard()
        print_added(args.path, n, g.stats())
    return EXIT_OK


def cmd_release(args) -> int:
    from ..dedup.cluster import release_actors

    print(f"stopped {release_actors(args.path, address=_address(args))} actor(s)")
    return EXIT_OK
