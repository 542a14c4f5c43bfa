"""The ``biomatch`` command line: the parser, assembled from one module per command group, and main().

Commands::

    biomatch extract IMAGE --dpi N -o OUT [--format FORMAT]     (IMAGE may be .wsq or .jp2)
    biomatch quality IMAGE --dpi N [--json]
    biomatch convert IN OUT --to FORMAT [--from FORMAT] [--dpi N] [--in-dpi N] [--foreign TOOL] [--position P]
    biomatch verify A B [--dpi N] [--position P] [--json]
    biomatch evaluate fvc FOLDER --dpi N [--json] [--out DIR [--report] [--peer NAME=CSV]] [--threads N]
    biomatch evaluate fvc2002 FOLDER [--json] [--out DIR [--report] [--peer NAME=DIR]]  (db1_b..db4_b)
    biomatch evaluate scores FILE.csv [--json] [--n-boot N] [--seed S] [--out DIR] [--peer NAME=CSV]
    biomatch evaluate identification FILE.csv [--gallery-size N] [--json] [--out DIR]
    biomatch evaluate faces FOLDER [--json]                    (one subfolder per identity)
    biomatch threshold (--fmr F | --fpir F) FILE.csv [--json] [--table OUT.json]
    biomatch synth fvc OUT [--fingers F] [--impressions I] [--seed S]
    biomatch segment IMAGE --dpi N --slap right4|left4|thumbs -o DIR [--overlay]   (see .segment)
    biomatch gallery create|enroll|dedup|stats|add-shard|check|backup|restore ...   (see .gallery)
    biomatch cluster start|create|enroll|dedup|stats|add-shard|release|stop ...    (see .cluster)
    biomatch demo dedup [--datasets DIR] [--out DIR]
    biomatch serve GALLERY [--host H] [--port N] [--certfile F --keyfile F] [--workers N] ...  (see .serve)
    biomatch keys create|list|revoke GALLERY ...                (API keys of the service, see .keys)
    biomatch audit verify GALLERY [--anchor SEQ:HASH]            (the service's audit log, see .audit)

Modules: :mod:`.templates` (extract, quality, convert, verify), :mod:`.evaluate` (FVC protocol),
:mod:`.scores` (score files, thresholds), :mod:`.faces`, :mod:`.synth`, :mod:`.gallery` (with
its input reader :mod:`.inputs`), :mod:`.cluster`, :mod:`.demo` (with :mod:`.demo_data`), :mod:`.serve`, :mod:`.keys`, :mod:`.audit`;
:mod:`._common` holds the exit codes, the argument types and the one progress bar.

Exit codes
----------
0   success (for ``verify``, whatever the decision: read it from the output)
1   unexpected internal error (a bug: the traceback is printed); ``gallery check``: not sound
2   bad usage or input: argparse errors, every :class:`~biomatch.errors.BiomatchError` and
    every ``OSError`` (a file or folder that cannot be read or written: missing, a file where a
    folder is expected, no permission, full disk); one message line goes to stderr, without a
    traceback
130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .. import __version__
from ..errors import BiomatchError
from . import audit, cluster, demo, evaluate, faces, gallery, keys, scores, segment, serve, synth, templates
from ._common import EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_INTERNAL", "EXIT_INPUT", "EXIT_INTERRUPTED"]


class _Version(argparse.Action):
    """``--version``: the version and the native core's kernel (loading the core only when asked)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            import biomatch._native as native

            kernel = (f"kernel {native.kernel} (this CPU runs {', '.join(native.available_kernels())}; "
                      f"{native.KERNEL_ENV} overrides)")
        except BiomatchError as exc:
            parser.exit(EXIT_INPUT, f"biomatch {__version__}\nbiomatch: error: {exc}\n")
        print(f"biomatch {__version__}, native {kernel}")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    """The ``biomatch`` parser; each command's ``func(args)`` returns its exit code."""
    ap = argparse.ArgumentParser(prog="biomatch", description="Biometric matching engine: fingerprint "
                                 "extraction, verification and evaluation.",
                                 epilog="Exit codes: 0 success, 1 internal error, 2 bad usage or input, "
                                        "130 interrupted.")
    ap.add_argument("--version", action=_Version, help="print the version and the native kernel in use, then exit")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr (-vv: debug)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    templates.add_parsers(sub)           # extract, quality, convert, verify
    esub = evaluate.add_parsers(sub)     # evaluate fvc, fvc2002
    synth.add_parsers(sub)               # synth fvc
    segment.add_parsers(sub)             # segment (slaps)
    scores.add_parsers(sub, esub)        # evaluate scores, identification; threshold
    faces.add_parsers(esub)              # evaluate faces
    gallery.add_parsers(sub)
    demo.add_parsers(sub)
    cluster.add_parsers(sub)
    serve.add_parsers(sub)               # serve (the [service] extra)
    keys.add_parsers(sub)                # keys create, list, revoke
    audit.add_parsers(sub)               # audit verify
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or usage error (2)
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_INPUT
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="biomatch: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except BiomatchError as exc:
        print(f"biomatch: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("biomatch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `biomatch ... | head`
        return EXIT_OK
    except OSError as exc:  # a path given on the command line that cannot be read or written
        where = f": {exc.filename!r}" if exc.filename is not None else ""
        print(f"biomatch: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_INPUT
