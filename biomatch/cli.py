"""The ``biomatch`` command line.

Commands::

    biomatch extract IMAGE --dpi N -o OUT [--format FORMAT]     (IMAGE may be .wsq or .jp2)
    biomatch convert IN OUT --to FORMAT [--from FORMAT] [--dpi N] [--in-dpi N] [--foreign TOOL] [--position P]
    biomatch verify A B [--dpi N] [--position P] [--json]
    biomatch evaluate fvc FOLDER --dpi N [--json] [--out DIR [--report] [--peer NAME=CSV]] [--threads N]
    biomatch evaluate fvc2002 FOLDER [--json] [--out DIR [--report] [--peer NAME=DIR]]  (db1_b..db4_b)
    biomatch evaluate scores FILE.csv [--json] [--n-boot N] [--seed S] [--out DIR] [--peer NAME=CSV]
    biomatch evaluate identification FILE.csv [--gallery-size N] [--json] [--out DIR]
    biomatch threshold (--fmr F | --fpir F) FILE.csv [--json] [--table OUT.json]
    biomatch evaluate faces FOLDER [--json]                    (one subfolder per identity)
    biomatch synth fvc OUT [--fingers F] [--impressions I] [--seed S]
    biomatch gallery create|enroll|dedup|stats PATH ...            (see biomatch.dedup.commands)
    biomatch demo dedup [--datasets DIR] [--out DIR]

``verify`` takes images or template files in any mix -- native, ISO/IEC 19794-2 (2005, 2011) or
ANSI/INCITS 378, recognised by their magic (``BMT1``, ``FMR``) whatever their name; ``--dpi`` is
needed only when one of them is an image, ``--position`` when a standard record holds several fingers.

Exit codes
----------
0   success (for ``verify``, whatever the decision: read it from the output)
1   unexpected internal error (a bug: the traceback is printed)
2   bad usage or input: argparse errors, every :class:`~biomatch.errors.BiomatchError` and
    every ``OSError`` (a file or folder that cannot be read or written: missing, a file where a
    folder is expected, no permission, full disk); one message line goes to stderr, without a
    traceback
130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from pathlib import Path
from typing import Sequence

from . import __version__
from .errors import BiomatchError, InvalidInputError

__all__ = ["main", "EXIT_OK", "EXIT_INTERNAL", "EXIT_INPUT", "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

log = logging.getLogger("biomatch.cli")

_TEMPLATE_MAGIC = b"BMT1"
_STANDARD_MAGIC = b"FMR\0"  # ISO/IEC 19794-2 (2005, 2011) and ANSI/INCITS 378
_TEMPLATE_FORMATS = ("native", "iso19794-2:2005", "iso19794-2:2011", "ansi378")  # = formats.FORMATS (lazy)
_FMR_LABELS = {"fmr_1e-2": "FMR 1%", "fmr_1e-3": "FMR 0.1%", "fmr_1e-4": "FMR 0.01%"}


def _dpi(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of dots per inch, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite dpi, got {text!r}")
    return value


def _dpi_or_auto(text: str):
    """A dpi, or ``"auto"``: estimated from the ridge period (:mod:`biomatch.extract.resolution`)."""
    return "auto" if text.strip().lower() == "auto" else _dpi(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate in [0, 1] such as 1e-4, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a rate in [0, 1] such as 1e-4, got {text!r}")
    return value


def _list_of(kind, what: str):
    def parse(text: str):
        try:
            values = [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        return values

    return parse


def _peer(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name.strip(), Path(path.strip())


def _add_bootstrap_options(p) -> None:
    p.add_argument("--n-boot", type=_positive_int, default=1000, metavar="N",
                   help="bootstrap replicates for the intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0: reproducible)")


def _add_report_options(p, metavar: str, peer_help: str) -> None:
    p.add_argument("--report", action="store_true",
                   help="with --out: write report.md (tables with confidence intervals, DET with peers, "
                        "CMC, examples) and its figures")
    p.add_argument("--peer", action="append", default=[], metavar=metavar, type=_peer,
                   help=peer_help + "; repeatable")
    _add_bootstrap_options(p)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="biomatch", description="Biometric matching engine: fingerprint "
                                 "extraction, verification and evaluation.",
                                 epilog="Exit codes: 0 success, 1 internal error, 2 bad usage or input, "
                                        "130 interrupted.")
    ap.add_argument("--version", action="version", version=f"biomatch {__version__}")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr (-vv: debug)")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("extract", help="extract a fingerprint template from an image",
                       description="Extract the minutiae of one image and write a template file.")
    p.add_argument("image", type=Path, metavar="IMAGE",
                   help="TIFF, PNG, BMP, PGM, JPEG, JPEG 2000 or WSQ fingerprint image")
    p.add_argument("--dpi", type=_dpi_or_auto, required=True,
                   help="resolution of the image (FVC TIFF tags are wrong), or 'auto' to estimate it from the "
                        "ridge period; a stated dpi at which the ridges are not human-sized is refused")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="template file to write")
    p.add_argument("--format", choices=_TEMPLATE_FORMATS, default="native",
                   help="template format (default: native BMT1)")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("quality", help="fingerprint image quality, 0-100 (NFIQ 2-style)",
                       description="Print the image's quality score, 0-100: 20 points per tenfold lower estimated "
                                   "chance of a false non-match at FMR 0.1%% (biomatch.extract.image_quality).")
    p.add_argument("image", type=Path, metavar="IMAGE")
    p.add_argument("--dpi", type=_dpi_or_auto, required=True, help="resolution of the image, or 'auto'")
    p.add_argument("--json", action="store_true", help="the score and its features as JSON")
    p.set_defaults(func=cmd_quality)

    p = sub.add_parser("convert", help="convert a template between native, ISO 19794-2 and ANSI 378",
                       description="Read a template record (format sniffed unless --from) and write it in "
                                   "another format. Coordinates are converted through 500 dpi.")
    p.add_argument("input", type=Path, metavar="IN")
    p.add_argument("output", type=Path, metavar="OUT")
    p.add_argument("--to", choices=_TEMPLATE_FORMATS, required=True, dest="to_format")
    p.add_argument("--from", choices=_TEMPLATE_FORMATS, default=None, dest="from_format",
                   help="input format (default: recognised from the content)")
    p.add_argument("--dpi", type=_dpi, default=500.0, help="resolution of a written ISO/ANSI record (default 500)")
    p.add_argument("--in-dpi", type=_dpi, default=None, dest="in_dpi",
                   help="true resolution of the input record, replacing its resolution fields (for writers "
                        "known to state a wrong one, e.g. afis ISO 2011; never guessed)")
    p.add_argument("--foreign", choices=("afis-iso2005", "nbis-py-iso2005"), default=None,
                   help="the input comes from this non-conformant writer: convert its layout first "
                        "(biomatch.formats.foreign); nbis-py needs --in-dpi")
    p.add_argument("--position", type=int, default=None,
                   help="keep only the views of this finger position code (needed for --to native "
                        "when the input holds several views)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("verify", help="compare two fingerprints (images or templates)",
                       description="Print the score of A against B and the decision at each documented "
                                   "threshold. A and B are images or template files in any mix: native, "
                                   "ISO/IEC 19794-2 (2005, 2011) or ANSI/INCITS 378, recognised by content.")
    p.add_argument("a", type=Path, metavar="A")
    p.add_argument("b", type=Path, metavar="B")
    p.add_argument("--dpi", type=_dpi, help="resolution of the image(s); required when A or B is an image")
    p.add_argument("--position", type=int, default=None,
                   help="finger position code of the view to compare when a standard record holds several")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("evaluate", help="accuracy and speed evaluation",
                       description="Accuracy and speed evaluation on a dataset.")
    esub = p.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")
    f = esub.add_parser("fvc", help="FVC protocol on a folder of <finger>_<impression>.<ext> images",
                        description="FVC protocol: genuine = all pairs of impressions of one finger; impostors "
                                    "= all impressions of different fingers (all-impostor protocol: eer, fmr100, "
                                    "fmr1000, zerofmr) and first impressions only (standard: eer_fvc).")
    f.add_argument("folder", type=Path, metavar="FOLDER")
    f.add_argument("--dpi", type=_dpi, required=True, help="resolution of the images (FVC2002 DB2: 569, others 500)")
    f.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    f.add_argument("--out", type=Path, metavar="DIR", help="write scores.csv, det.png and scores_hist.png here")
    f.add_argument("--threads", type=_positive_int, default=1, help="matcher threads (default 1)")
    f.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    _add_report_options(f, "NAME=CSV", "a peer's score CSV on the same images (kind/label, probe, candidate, score)")
    f.set_defaults(func=cmd_evaluate_fvc)

    p = sub.add_parser("synth", help="generate synthetic fingerprints with ground truth",
                       description="Synthetic fingerprint data (biomatch.datasets.synthetic).")
    ssub = p.add_subparsers(dest="synth_command", required=True, metavar="KIND")
    f = ssub.add_parser("fvc", help="an FVC-layout folder: <finger>_<impression>.png (500 dpi) + .json ground truth")
    f.add_argument("out", type=Path, metavar="OUT")
    f.add_argument("--fingers", type=_positive_int, default=10, help="number of fingers (default 10)")
    f.add_argument("--impressions", type=_positive_int, default=8, help="impressions per finger (default 8)")
    f.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    f.add_argument("--condition", action="append", default=None, metavar="NAME[:PARAM]",
                   help="degrade every impression (repeatable, applied in order): dry, wet, worn, scars, "
                        "distortion, contact, noise, gamma, resolution (biomatch.datasets.degrade; PARAM in "
                        "the condition's physical unit)")
    f.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    f.set_defaults(func=cmd_synth_fvc)

    f = esub.add_parser("fvc2002", help="FVC protocol on every FVC2002 B set in a folder, one summary table",
                        description="Runs the FVC protocol on db1_b..db4_b found in FOLDER at their "
                                    "published resolutions (500, 569, 500, 500 dpi) and prints one table.")
    f.add_argument("folder", type=Path, metavar="FOLDER", help="folder holding db1_b ... db4_b")
    f.add_argument("--out", type=Path, metavar="DIR", help="write each set's scores.csv and plots under DIR/<set>")
    f.add_argument("--json", action="store_true", help="print one JSON object keyed by set")
    f.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    _add_report_options(f, "NAME=DIR", "a peer's score CSVs: DIR/<set>.csv or DIR/<set>/scores.csv "
                                       "(benchmarks/peers_fvc.py --scores-out writes them)")
    f.set_defaults(func=cmd_evaluate_fvc2002)

    f = esub.add_parser("scores", help="error rates with confidence intervals from any system's score CSV",
                        description="Verification error rates of a score file (CSV with columns score and label, "
                                    "1 genuine / 0 impostor, or kind; optional subject [and candidate_subject] "
                                    "for the bootstrap over subjects; see biomatch.evaluate.scorefile).")
    f.add_argument("file", type=Path, metavar="FILE.csv")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.add_argument("--name", default="system", help="system name in the report (default: system)")
    _add_bootstrap_options(f)
    f.add_argument("--out", type=Path, metavar="DIR", help="write a report folder (report.md + figures) here")
    f.add_argument("--peer", action="append", default=[], metavar="NAME=CSV", type=_peer,
                   help="another system's score CSV on the same data, for the report (repeatable)")
    f.set_defaults(func=cmd_evaluate_scores)

    f = esub.add_parser("identification", help="CMC, rank-k, FNIR at FPIR and hit rate vs penetration "
                                               "from candidate lists",
                        description="Identification rates of a candidate-list CSV: columns probe, candidate, "
                                    "score, mated (1 when the candidate is the probe's identity); optional "
                                    "probe_mated for truncated lists (see biomatch.evaluate.scorefile).")
    f.add_argument("file", type=Path, metavar="FILE.csv")
    f.add_argument("--gallery-size", type=_positive_int, metavar="N",
                   help="enrolled entries (default: the number of distinct candidates)")
    f.add_argument("--ranks", type=_list_of(int, "ranks"), default=[1, 5, 10], metavar="K,K,...",
                   help="ranks reported (default 1,5,10)")
    f.add_argument("--fpir", type=_list_of(float, "rates"), default=[0.1, 0.01, 0.001], metavar="F,F,...",
                   help="FPIRs at which FNIR is reported (default 0.1,0.01,0.001)")
    f.add_argument("--penetration", type=_list_of(float, "rates"), default=[0.01, 0.05, 0.1], metavar="P,P,...",
                   help="penetration rates at which the hit rate is reported (default 0.01,0.05,0.1)")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.add_argument("--out", type=Path, metavar="DIR", help="write cmc.png and penetration.png here")
    f.set_defaults(func=cmd_evaluate_identification)

    p = sub.add_parser("threshold", help="decision threshold for a target FMR or FPIR, with its interval",
                       description="Threshold (accept when score >= threshold) whose development FMR is at most "
                                   "--fmr (verification score CSV) or whose FPIR is at most --fpir (candidate-"
                                   "list CSV), with a bootstrap interval, the observed rate and its upper bound.")
    p.add_argument("file", type=Path, metavar="FILE.csv")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--fmr", type=_rate, help="target false match rate, e.g. 1e-4")
    g.add_argument("--fpir", type=_rate, help="target false positive identification rate (candidate-list CSV)")
    _add_bootstrap_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--table", type=Path, metavar="OUT.json",
                   help="also write the score -> FMR calibration table (--fmr only)")
    p.add_argument("--matcher", default="", help="matcher name and version stored in the table")
    p.set_defaults(func=cmd_threshold)

    f = esub.add_parser("faces", help="face verification on a folder with one subfolder per identity",
                        description="Face verification (YuNet + SFace): genuine = all pairs of images of one "
                                    "identity, impostors = all pairs of different identities (cosine score). "
                                    "Prints EER, FMR100, FMR1000, failures to detect, per-face timings on one "
                                    "thread, and the pairs on the wrong side of the SFace threshold.")
    f.add_argument("folder", type=Path, metavar="FOLDER")
    f.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    f.set_defaults(func=cmd_evaluate_faces)

    from .dedup.commands import add_parsers as add_gallery_parsers

    add_gallery_parsers(sub, _dpi, _positive_int)  # gallery create|enroll|dedup|stats, demo dedup
    return ap


# --------------------------------------------------------------------------- commands

def cmd_extract(args) -> int:
    from ._io import write_private_atomic
    from .extract import extract
    from .formats import dump

    cap: dict = {}
    template = extract(args.image, args.dpi, capture=cap)
    try:
        write_private_atomic(args.output, dump(template, args.format))
    except OSError as exc:
        raise BiomatchError(f"-o: cannot write {str(args.output)!r}: {exc.strerror}") from exc
    estimated = f", {cap['dpi']:.0f} dpi (estimated from the ridge period)" if args.dpi == "auto" and "dpi" in cap \
        else ""
    print(f"{args.output}: {len(template)} minutiae, quality {template.quality}{estimated}")
    return EXIT_OK


def cmd_quality(args) -> int:
    from .extract.image_quality import image_quality

    q = image_quality(args.image, args.dpi)
    if args.json:
        print(json.dumps({"score": q.score, "features": q.features.as_dict()}, indent=1, sort_keys=True))
    else:
        print(q.score)
    return EXIT_OK


def cmd_convert(args) -> int:
    from ._io import write_private_atomic
    from .formats import dump, load_views

    source = args.input
    in_dpi = args.in_dpi
    if args.foreign is not None:
        from .formats import foreign

        try:
            raw = args.input.read_bytes()
        except OSError as exc:
            raise BiomatchError(f"IN: cannot read {str(args.input)!r}: {exc.strerror}") from exc
        if args.foreign == "afis-iso2005":
            source = foreign.from_afis_iso2005(raw)
        else:
            if in_dpi is None:
                raise InvalidInputError("--in-dpi: required with --foreign nbis-py-iso2005 (its records state "
                                        "no resolution), got none")
            source, in_dpi = foreign.from_nbis_py_iso2005(raw, in_dpi), None
    views = load_views(source, args.from_format, dpi=in_dpi)
    if args.position is not None:
        views = tuple(v for v in views if v.position == args.position)
    if not views:
        where = "" if args.position is None else f" with finger position {args.position}"
        raise BiomatchError(f"IN: {str(args.input)!r} holds no finger view{where}")
    if args.to_format == "native" and len(views) > 1:
        raise InvalidInputError(f"--to native: a native template holds one finger, {str(args.input)!r} holds "
                                f"{len(views)} views (positions {sorted({v.position for v in views})}); "
                                "pick one with --position")
    data = dump(list(views), args.to_format, dpi=args.dpi)
    try:
        write_private_atomic(args.output, data)
    except OSError as exc:
        raise BiomatchError(f"OUT: cannot write {str(args.output)!r}: {exc.strerror}") from exc
    n = sum(len(v.template) for v in views)
    print(f"{args.output}: {args.to_format}, {len(views)} view(s), {n} minutiae")
    return EXIT_OK


def _template_kind(path: Path) -> str | None:
    """``"native"`` or ``"standard"`` (ISO/IEC 19794-2 2005/2011, ANSI 378) by the file's magic,
    None for anything else (an image)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise BiomatchError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    return {_TEMPLATE_MAGIC: "native", _STANDARD_MAGIC: "standard"}.get(head)


def _load_either(path: Path, dpi: float | None, name: str, position: int | None = None):
    """The template of ``path``: a template file in any supported format (by content, not name)
    or an image extracted at ``dpi``; a standard record with several fingers needs ``position``."""
    kind = _template_kind(path)
    if kind == "native":
        from .formats import load_native

        return load_native(path)
    if kind == "standard":
        from .formats import load_views

        views = load_views(path)
        chosen = [v for v in views if position is None or v.position == position]
        if len(chosen) != 1:
            have = sorted(v.position for v in views)
            want = "one finger view" if position is None else f"one view of finger position {position}"
            raise InvalidInputError(f"--position: {name} ({str(path)!r}) must hold {want}; it holds "
                                    f"{len(views)} (positions {have})")
        return chosen[0].template
    if dpi is None:
        raise InvalidInputError(f"--dpi: required because {name} ({str(path)!r}) is an image, not a template")
    from .extract import extract

    return extract(path, dpi)


def _fmr_key(fmr: float) -> str:
    return f"fmr_{fmr:.0e}".replace("e-0", "e-")  # 0.01 -> "fmr_1e-2"


def matcher_thresholds() -> dict[str, float | None]:
    """The documented decision thresholds of :mod:`biomatch.match`, keyed ``"fmr_1e-2"`` etc.

    Read from ``biomatch.match.THRESHOLDS`` (``{"fmr_1e-2": score, ...}``) or else
    ``biomatch.match.SCORE_AT_FMR`` (``{0.01: score, ...}``); a value of ``None`` means
    "not measured yet". ``{}`` when the matcher publishes neither.
    """
    import importlib

    match = importlib.import_module(f"{__package__}.match")
    raw = getattr(match, "THRESHOLDS", None)
    if raw is None:
        raw = {_fmr_key(float(k)): v for k, v in dict(getattr(match, "SCORE_AT_FMR", None) or {}).items()}
    out: dict[str, float | None] = {}
    for key, value in dict(raw).items():
        try:
            out[str(key)] = None if value is None else float(value)
        except (TypeError, ValueError):
            log.warning("biomatch.match threshold %r is not a number: %r", key, value)
    return out


def cmd_verify(args) -> int:
    a = _load_either(args.a, args.dpi, "A", args.position)
    b = _load_either(args.b, args.dpi, "B", args.position)
    try:
        from .match import FingerprintMatcher
    except ImportError as exc:
        raise BiomatchError(f"the matcher is not available in this installation: {exc}") from exc
    score = float(FingerprintMatcher(a).match(b))
    thresholds = matcher_thresholds()
    decisions = {k: (None if t is None else score >= t) for k, t in thresholds.items()}
    if args.json:
        print(json.dumps({"score": score, "thresholds": thresholds, "match": decisions,
                          "minutiae": [len(a), len(b)]}))
        return EXIT_OK
    print(f"score: {score:.4f}")
    if not thresholds:
        print("decision: unavailable (the matcher publishes no thresholds)")
    for key, t in sorted(thresholds.items(), key=lambda kv: (kv[1] is None, kv[1] or 0.0)):
        label = _FMR_LABELS.get(key, key)
        if t is None:
            print(f"{label:>10s} (threshold not measured yet): -")
        else:
            print(f"{label:>10s} (threshold {t:g}): {'MATCH' if decisions[key] else 'no match'}")
    return EXIT_OK


def cmd_evaluate_fvc(args) -> int:
    from .evaluate.fvc import StderrProgress, run_fvc

    progress = None if args.quiet else StderrProgress(label=f"{args.folder.name}: ")
    _check_report_args(args)
    peers = {name: _read_peer(path, None) for name, path in args.peer}  # fail before the long run
    result = run_fvc(args.folder, args.dpi, n_threads=args.threads, progress=progress)
    if args.out:
        _write_outputs(result, args.out, args.folder.name)
    if args.report:
        from .evaluate.report import write_report

        rs = _fvc_report_set(args.folder.name, args.folder, args.dpi, result, peers, args.out)
        report = write_report(args.out, [rs], title=f"FVC protocol on {args.folder.name}",
                              command=_command_line(), n_boot=args.n_boot, seed=args.seed)
        print(f"report: {report}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.summary()))
        return EXIT_OK
    s = result.summary()
    print(f"FVC protocol on {args.folder} ({args.dpi:g} dpi)")
    print(f"  genuine pairs        {s['n_genuine']}")
    print(f"  impostor pairs       {s['n_impostor']} (all-impostor), {s['n_impostor_fvc']} (standard)")
    print(f"  failed extractions   {s['n_failed_extractions']}")
    print(f"  EER                  {100 * s['eer']:.2f}%   (standard protocol: {100 * s['eer_fvc']:.2f}%)")
    print(f"  FMR100               {100 * s['fmr100']:.2f}%")
    print(f"  FMR1000              {100 * s['fmr1000']:.2f}%")
    print(f"  ZeroFMR              {100 * s['zerofmr']:.2f}%")
    print(f"  extraction (median)  {s['extract_ms_median']:.1f} ms CPU per image")
    print(f"  preparation (median) {s['prepare_ms_median']:.2f} ms CPU per template (once, as at enrolment)")
    print(f"  match (median)       {s['match_us_median']:.2f} us CPU per comparison")
    if args.out:
        print(f"  wrote {args.out / 'scores.csv'}, {args.out / 'det.png'}, {args.out / 'scores_hist.png'}")
    return EXIT_OK


def cmd_evaluate_faces(args) -> int:
    from .face.evaluate import run_faces

    s = run_faces(args.folder).summary()
    if args.json:
        print(json.dumps(s))
        return EXIT_OK
    print(f"Face verification on {args.folder} (YuNet + SFace, cosine)")
    print(f"  images               {s['n_images']}")
    print(f"  genuine pairs        {s['n_genuine']}")
    print(f"  impostor pairs       {s['n_impostor']}")
    print(f"  failed to detect     {s['failed_to_detect']}")
    print(f"  EER                  {100 * s['eer']:.2f}%")
    print(f"  FMR100               {100 * s['fmr100']:.2f}%")
    print(f"  FMR1000              {100 * s['fmr1000']:.2f}%")
    print(f"  detection (median)   {s['detect_ms_median']:.1f} ms per image (1 thread)")
    print(f"  embedding (median)   {s['embed_ms_median']:.1f} ms per face (1 thread, incl. alignment)")
    print(f"  at threshold {s['threshold']:.3f}   {s['n_misses']} pairs on the wrong side")
    for m in s["misses"][:50]:
        print(f"    {m['kind']:16s} {m['score']:+.3f}  {m['a']}  {m['b']}")
    for f in s["failures"]:
        print(f"  not detected         {f['image']}: {f['reason']}")
    return EXIT_OK


def cmd_synth_fvc(args) -> int:
    from .datasets.synthetic import write_fvc
    from .evaluate.fvc import StderrProgress

    if args.out.exists() and not args.out.is_dir():
        raise InvalidInputError(f"OUT: expected a new or existing folder, got {str(args.out)!r}, which is a file")
    progress = None
    if not args.quiet:
        bar = StderrProgress(label="synth: ")
        progress = lambda done, total: bar("images", done, total)  # noqa: E731
    folder = write_fvc(args.out, args.fingers, args.impressions, args.seed, progress=progress,
                       conditions=args.condition)
    dpi = 500
    if args.condition:
        first = sorted(folder.glob("*.json"))[0]
        dpi = json.loads(first.read_text()).get("dpi", 500)
    print(f"wrote {args.fingers * args.impressions} impressions of {args.fingers} fingers to {folder} "
          f"({dpi:g} dpi{'; ' + ', '.join(args.condition) if args.condition else ''}; evaluate with: "
          f"biomatch evaluate fvc {folder} --dpi {dpi:g})")
    return EXIT_OK


FVC2002_DPI = {"db1_b": 500.0, "db2_b": 569.0, "db3_b": 500.0, "db4_b": 500.0}


def cmd_evaluate_fvc2002(args) -> int:
    from .evaluate.fvc import StderrProgress, run_fvc

    sets = [name for name in FVC2002_DPI if (args.folder / name).is_dir()]
    if not sets:
        raise BiomatchError(f"folder: expected a folder holding FVC2002 db1_b..db4_b, got {str(args.folder)!r} "
                            "with none of them (pass your own set with: biomatch evaluate fvc FOLDER --dpi N)")
    _check_report_args(args)
    peers = {name: {s: _read_peer(path, s) for s in sets} for name, path in args.peer}  # fail early
    summaries, report_sets = {}, []
    for name in sets:
        progress = None if args.quiet else StderrProgress(label=f"{name}: ")
        result = run_fvc(args.folder / name, FVC2002_DPI[name], progress=progress)
        if args.out:
            _write_outputs(result, args.out / name, name)
        if args.report:
            report_sets.append(_fvc_report_set(name, args.folder / name, FVC2002_DPI[name], result,
                                               {p: v[name] for p, v in peers.items()}, args.out))
        summaries[name] = result.summary()
    if args.report:
        from .evaluate.report import write_report

        report = write_report(args.out, report_sets, title="FVC2002 B sets: biomatch"
                              + (" and peers" if peers else ""), command=_command_line(),
                              n_boot=args.n_boot, seed=args.seed,
                              intro="All-impostor protocol: genuine = every pair of impressions of one finger "
                                    "(280 per set), impostors = every pair of impressions of different fingers "
                                    "(2880 per set); one comparison per unordered pair.")
        print(f"report: {report}", file=sys.stderr)
    if args.json:
        print(json.dumps(summaries))
        return EXIT_OK
    print(f"FVC2002 B sets in {args.folder} (all-impostor protocol; EER_fvc: standard protocol)")
    print(f"{'set':6s} {'dpi':>4s} {'EER':>7s} {'FMR100':>7s} {'FMR1000':>8s} {'ZeroFMR':>8s} {'EER_fvc':>8s} "
          f"{'extract ms':>10s} {'match us':>9s}")
    for name, s in summaries.items():
        print(f"{name:6s} {FVC2002_DPI[name]:4.0f} {100 * s['eer']:6.2f}% {100 * s['fmr100']:6.2f}% "
              f"{100 * s['fmr1000']:7.2f}% {100 * s['zerofmr']:7.2f}% {100 * s['eer_fvc']:7.2f}% "
              f"{s['extract_ms_median']:10.1f} {s['match_us_median']:9.2f}")
    if len(summaries) > 1:
        mean = {k: sum(s[k] for s in summaries.values()) / len(summaries) for k in ("eer", "fmr100", "fmr1000")}
        print(f"{'mean':6s} {'':4s} {100 * mean['eer']:6.2f}% {100 * mean['fmr100']:6.2f}% {100 * mean['fmr1000']:7.2f}%")
    if args.out:
        print(f"scores and DET plots written under {args.out}/<set>/")
    return EXIT_OK


def _command_line() -> str:
    return "biomatch " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("biomatch") else ""


def _check_report_args(args) -> None:
    if (args.report or args.peer) and not args.out:
        raise InvalidInputError("--report: expected --out DIR as well (the report folder), got no --out")
    if args.peer and not args.report:
        raise InvalidInputError("--peer: expected --report as well (peers appear only in the report)")


def _read_peer(path: Path, set_name: str | None):
    """A peer's ScoreSet: ``path`` is a CSV, or (for a named set) a folder of per-set CSVs."""
    from .evaluate.scorefile import read_scores

    if set_name is not None and path.is_dir():
        for cand in (path / f"{set_name}.csv", path / set_name / "scores.csv"):
            if cand.is_file():
                return read_scores(cand, arg="--peer")
        raise BiomatchError(f"--peer: expected {set_name}.csv or {set_name}/scores.csv in {str(path)!r}, "
                            "found neither")
    return read_scores(path, arg="--peer")


def _fvc_report_set(name: str, folder: Path, dpi: float, result, peers: dict, out: Path):
    """The report section of one FVC run: biomatch + peers, facts, CMC and two examined pairs."""
    import numpy as np

    from .evaluate.fvc import list_fvc_images
    from .evaluate.report import ReportSet
    from .evaluate.scorefile import score_set_from_fvc

    s = result.summary()
    systems = {"biomatch": score_set_from_fvc(result, str(folder)), **peers}
    for peer, sc in peers.items():
        if (sc.genuine.size, sc.impostor.size) != (result.n_genuine, result.n_impostor):
            log.warning("--peer %s: %d genuine / %d impostor scores on %s, biomatch has %d / %d (another protocol?)",
                        peer, sc.genuine.size, sc.impostor.size, name, result.n_genuine, result.n_impostor)
    rs = ReportSet(name, systems, facts={
        "images": f"{len(result.names)} at {dpi:g} dpi ({folder})",
        "standard protocol (first impressions, 45 impostor pairs)": f"EER {100 * s['eer_fvc']:.2f}%",
        "failed extractions": str(s["n_failed_extractions"]),
        "biomatch CPU time (one thread, medians)": f"extraction {s['extract_ms_median']:.1f} ms per image, "
                                                   f"match {s['match_us_median']:.2f} us per comparison"},
        identification=result.identification(),
        identification_note=f"closed set: {len(result.names) - result.identification().gallery_size} probes "
                            f"against a gallery of first impressions, N = {result.identification().gallery_size}")
    paths = {im.name: im.path for im in list_fvc_images(folder)}
    try:
        from .evaluate.plots import plot_match_explanation

        fig = out / "figures"
        fig.mkdir(parents=True, exist_ok=True)
        for kind, pick, caption in (("impostor", np.argmax, "Highest-scoring impostor pair"),
                                    ("genuine", np.argmin, "Lowest-scoring genuine pair")):
            k = int(pick(result.scores[kind]))
            i, j = result.pairs[kind][k]
            a, b = result.names[i], result.names[j]
            png = fig / f"{name}_{kind}_{a}_{b}.png"
            info = plot_match_explanation(paths[a], paths[b], dpi, png, title=f"{name} {kind} {a} vs {b}")
            rs.examples.append((f"{caption}: {a} vs {b}, score {result.scores[kind][k]:.4f} "
                                f"({len(info.get(info['pairs_key'] or '', ((),))[0])} paired minutiae drawn)", png))
    except BiomatchError as exc:  # e.g. no matplotlib: the report keeps its tables
        log.warning("report: no example figures for %s: %s", name, exc)
    return rs


def cmd_evaluate_scores(args) -> int:
    from .evaluate.report import ReportSet, summarize, write_report
    from .evaluate.scorefile import read_scores

    scores = read_scores(args.file)
    peers = {name: read_scores(path, arg="--peer") for name, path in args.peer}
    s = summarize(scores, n_boot=args.n_boot, seed=args.seed)
    if args.out:
        report = write_report(args.out, [ReportSet(args.file.stem, {args.name: scores, **peers})],
                              title=f"Scores of {args.file.name}", command=_command_line(),
                              n_boot=args.n_boot, seed=args.seed)
    if args.json:
        print(json.dumps(s))
        return EXIT_OK
    unit = (f"{s['n_subjects']} subjects ({s['subject_source']})" if s["n_subjects"]
            else "comparisons (no subject column)")
    print(f"{args.file}: {s['n_genuine']} genuine, {s['n_impostor']} impostor comparisons")
    print(f"  95% intervals: bootstrap over {unit}, {args.n_boot} replicates, seed {args.seed}")
    for key, label in (("eer", "EER"), ("fmr100", "FMR100"), ("fmr1000", "FMR1000"), ("fmr10000", "FMR10000")):
        lo, hi = s[f"{key}_ci95"]
        note = "" if s.get(f"{key}_resolved", True) else "  (fewer impostors than 1/FMR: this is ZeroFMR)"
        rule = "  (rule of 3: no error observed)" if s["ci_method"][key] == "rule-of-3" else ""
        print(f"  {label:9s} {100 * s[key]:6.2f}%   [{100 * lo:.2f}%, {100 * hi:.2f}%]{note}{rule}")
    print(f"  ZeroFMR   {100 * s['zerofmr']:6.2f}%")
    print(f"  ZeroFNMR  {100 * s['zerofnmr']:6.2f}%")
    if args.out:
        print(f"  report: {report}")
    return EXIT_OK


def cmd_evaluate_identification(args) -> int:
    from .evaluate import identification as ident
    from .evaluate.scorefile import read_searches

    o = read_searches(args.file, args.gallery_size)
    for k in args.ranks:
        if k < 1:
            raise InvalidInputError(f"--ranks: expected ranks >= 1, got {k}")
    for name, values in (("--fpir", args.fpir), ("--penetration", args.penetration)):
        bad = [v for v in values if not 0.0 <= v <= 1.0]
        if bad:
            raise InvalidInputError(f"{name}: expected rates in [0, 1], got {bad[0]}")
    out = {"n_mated": o.n_mated, "n_nonmated": o.n_nonmated, "gallery_size": o.gallery_size}
    if o.n_mated:
        out["rank"] = {str(k): ident.rank_k(o, k) for k in args.ranks}
        out["hit_rate_at_penetration"] = {f"{p:g}": ident.hit_rate_at_penetration(o, p) for p in args.penetration}
    if o.n_mated and o.n_nonmated:
        out["fnir_at_fpir"] = {f"{f:g}": ident.fnir_at_fpir(o, f) for f in args.fpir}
    if args.out and o.n_mated:
        from .evaluate.plots import plot_cmc, plot_penetration

        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BiomatchError(f"--out: cannot create {str(args.out)!r}: {exc.strerror}") from exc
        plot_cmc({args.file.stem: o}, args.out / "cmc.png", title=f"CMC {args.file.name}")
        plot_penetration({args.file.stem: ident.penetration_curve(o)}, args.out / "penetration.png",
                         title=f"Hit rate vs penetration, {args.file.name}")
    if args.json:
        print(json.dumps(out))
        return EXIT_OK
    print(f"{args.file}: {o.n_mated} mated and {o.n_nonmated} non-mated searches, gallery of {o.gallery_size}")
    if not o.n_mated:
        print("  no mated search: rank and hit rates are undefined")
    for k, v in out.get("rank", {}).items():
        print(f"  rank-{k:<6s} {100 * v:6.2f}%")
    for f, v in out.get("fnir_at_fpir", {}).items():
        print(f"  FNIR at FPIR {f:<6s} {100 * v:6.2f}%")
    for p, v in out.get("hit_rate_at_penetration", {}).items():
        print(f"  hit rate at penetration {p:<6s} {100 * v:6.2f}%")
    if o.n_mated and not o.n_nonmated:
        print("  no non-mated search: FNIR at FPIR is undefined (closed-set data)")
    if args.out and o.n_mated:
        print(f"  wrote {args.out / 'cmc.png'}, {args.out / 'penetration.png'}")
    return EXIT_OK


def cmd_threshold(args) -> int:
    from .evaluate.thresholds import calibration_table, round_up, threshold_at_fmr, threshold_at_fpir

    if args.fpir is not None:
        if args.table:
            raise InvalidInputError("--table: expected with --fmr (a verification score file), got --fpir")
        from .evaluate.scorefile import read_searches

        o = read_searches(args.file)
        if not o.n_nonmated:
            raise InvalidInputError(f"{args.file.name}: expected non-mated searches for an FPIR threshold, got none")
        c = threshold_at_fpir(o.nonmated_top_score, args.fpir, mated_scores=o.mate_score if o.n_mated else None,
                              n_boot=args.n_boot, seed=args.seed)
        rate, miss, unit = "FPIR", "FNIR", "non-mated searches"
        target = args.fpir
    else:
        from .evaluate.scorefile import read_scores

        sc = read_scores(args.file)
        c = threshold_at_fmr(sc.impostor, args.fmr, genuine=sc.genuine, impostor_subjects=sc.impostor_subjects,
                             n_boot=args.n_boot, seed=args.seed)
        rate, miss, unit = "FMR", "FNMR", "impostor comparisons"
        target = args.fmr
        if args.table:
            table = calibration_table(sc.impostor, sc.genuine, matcher=args.matcher, dataset=str(args.file))
            table.save(args.table)
    if args.json:
        print(json.dumps({**c.to_dict(), "ci95": c.ci.as_list() if c.ci else None}))
        return EXIT_OK
    n_hit = round(c.fmr * c.n_impostor)
    print(f"threshold for {rate} <= {target:g}: {round_up(c.threshold, 6):g}  (accept when score >= threshold; "
          f"rounded up to 6 digits; exact: {c.threshold!r})")
    if c.ci is not None:
        print(f"  95% interval of the threshold: [{round_up(c.ci.low, 6):g}, {round_up(c.ci.high, 6):g}] "
              f"({c.ci.method}, {c.ci.n_boot} replicates, seed {c.ci.seed})")
    print(f"  {rate} on this set: {100 * c.fmr:.4f}% ({n_hit} of {c.n_impostor} {unit}); "
          f"95% upper bound {100 * c.fmr_upper:.4f}%")
    if c.fnmr is not None:
        print(f"  {miss} on this set: {100 * c.fnmr:.2f}% of {c.n_genuine}")
    if not c.resolved:
        print(f"  note: {target:g} is below the resolution of {c.n_impostor} {unit} (1/{c.n_impostor} = "
              f"{1 / c.n_impostor:.2g}); the threshold sits just above the highest score and its true rate is "
              f"only bounded by {100 * c.fmr_upper:.4f}%")
    if args.table:
        print(f"  calibration table written to {args.table}")
    return EXIT_OK


def _write_outputs(result, out: Path, label: str) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "scores.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["kind", "probe", "candidate", "score"])
            for kind, p, c, s in result.score_rows():
                w.writerow([kind, p, c, repr(s)])
    except OSError as exc:
        raise BiomatchError(f"--out: cannot write to {str(out)!r}: {exc.strerror}") from exc
    from .evaluate.plots import plot_det, plot_score_histogram

    plot_det((result.genuine, result.impostor), out / "det.png", title=f"DET {label} (all impostors)")
    plot_score_histogram(result.genuine, result.impostor, out / "scores_hist.png", title=f"Scores {label}")


# --------------------------------------------------------------------------- entry point

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
