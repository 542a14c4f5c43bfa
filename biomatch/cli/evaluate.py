"""``biomatch evaluate fvc | fvc2002``: the FVC protocol on image folders, with an optional report.

The protocol itself is :func:`biomatch.evaluate.fvc.run_fvc`; this module reads the options,
prints the summary, writes ``scores.csv`` and the plots, and assembles the report (biomatch and
the peers' score files side by side). It also creates the ``evaluate`` parser, to which
:mod:`.scores` and :mod:`.faces` add their protocols.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

from ..errors import BiomatchError, InvalidInputError
from ._common import EXIT_OK, Progress, command_line, dpi, peer, positive_int

__all__ = ["add_parsers", "add_bootstrap_options", "FVC2002_DPI"]

log = logging.getLogger(__name__)

FVC2002_DPI = {"db1_b": 500.0, "db2_b": 569.0, "db3_b": 500.0, "db4_b": 500.0}


def add_bootstrap_options(p) -> None:
    p.add_argument("--n-boot", type=positive_int, default=1000, metavar="N",
                   help="bootstrap replicates for the intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0: reproducible)")


def _add_report_options(p, metavar: str, peer_help: str) -> None:
    p.add_argument("--report", action="store_true",
                   help="with --out: write report.md (tables with confidence intervals, DET with peers, "
                        "CMC, examples) and its figures")
    p.add_argument("--peer", action="append", default=[], metavar=metavar, type=peer,
                   help=peer_help + "; repeatable")
    add_bootstrap_options(p)


def add_parsers(sub):
    """Add ``evaluate`` with ``fvc`` and ``fvc2002`` to the top-level sub-parsers; returns the
    protocol sub-parsers, for the other protocols."""
    p = sub.add_parser("evaluate", help="accuracy and speed evaluation",
                       description="Accuracy and speed evaluation on a dataset.")
    esub = p.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")
    f = esub.add_parser("fvc", help="FVC protocol on a folder of <finger>_<impression>.<ext> images",
                        description="FVC protocol: genuine = all pairs of impressions of one finger; impostors "
                                    "= all impressions of different fingers (all-impostor protocol: eer, fmr100, "
                                    "fmr1000, zerofmr) and first impressions only (standard: eer_fvc).")
    f.add_argument("folder", type=Path, metavar="FOLDER")
    f.add_argument("--dpi", type=dpi, required=True, help="resolution of the images (FVC2002 DB2: 569, others 500)")
    f.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    f.add_argument("--out", type=Path, metavar="DIR", help="write scores.csv, det.png and scores_hist.png here")
    f.add_argument("--threads", type=positive_int, default=1, help="matcher threads (default 1)")
    f.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    _add_report_options(f, "NAME=CSV", "a peer's score CSV on the same images (kind/label, probe, candidate, score)")
    f.set_defaults(func=cmd_evaluate_fvc)

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
    return esub


def cmd_evaluate_fvc(args) -> int:
    from ..evaluate.fvc import run_fvc

    progress = Progress.stages(f"{args.folder.name}: ", args.quiet)
    _check_report_args(args)
    peers = {name: _read_peer(path, None) for name, path in args.peer}  # fail before the long run
    result = run_fvc(args.folder, args.dpi, n_threads=args.threads, progress=progress)
    if args.out:
        _write_outputs(result, args.out, args.folder.name)
    if args.report:
        from ..evaluate.report import write_report

        rs = _fvc_report_set(args.folder.name, args.folder, args.dpi, result, peers, args.out)
        report = write_report(args.out, [rs], title=f"FVC protocol on {args.folder.name}",
                              command=command_line(), n_boot=args.n_boot, seed=args.seed)
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


def cmd_evaluate_fvc2002(args) -> int:
    from ..evaluate.fvc import run_fvc

    sets = [name for name in FVC2002_DPI if (args.folder / name).is_dir()]
    if not sets:
        raise BiomatchError(f"folder: expected a folder holding FVC2002 db1_b..db4_b, got {str(args.folder)!r} "
                            "with none of them (pass your own set with: biomatch evaluate fvc FOLDER --dpi N)")
    _check_report_args(args)
    peers = {name: {s: _read_peer(path, s) for s in sets} for name, path in args.peer}  # fail early
    summaries, report_sets = {}, []
    for name in sets:
        progress = Progress.stages(f"{name}: ", args.quiet)
        result = run_fvc(args.folder / name, FVC2002_DPI[name], progress=progress)
        if args.out:
            _write_outputs(result, args.out / name, name)
        if args.report:
            report_sets.append(_fvc_report_set(name, args.folder / name, FVC2002_DPI[name], result,
                                               {p: v[name] for p, v in peers.items()}, args.out))
        summaries[name] = result.summary()
    if args.report:
        from ..evaluate.report import write_report

        report = write_report(args.out, report_sets, title="FVC2002 B sets: biomatch"
                              + (" and peers" if peers else ""), command=command_line(),
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


def _check_report_args(args) -> None:
    if (args.report or args.peer) and not args.out:
        raise InvalidInputError("--report: expected --out DIR as well (the report folder), got no --out")
    if args.peer and not args.report:
        raise InvalidInputError("--peer: expected --report as well (peers appear only in the report)")


def _read_peer(path: Path, set_name: str | None):
    """A peer's ScoreSet: ``path`` is a CSV, or (for a named set) a folder of per-set CSVs."""
    from ..evaluate.scorefile import read_scores

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

    from ..evaluate.fvc import list_fvc_images
    from ..evaluate.report import ReportSet
    from ..evaluate.scorefile import score_set_from_fvc

    s = result.summary()
    systems = {"biomatch": score_set_from_fvc(result, str(folder)), **peers}
    for peer_name, sc in peers.items():
        if (sc.genuine.size, sc.impostor.size) != (result.n_genuine, result.n_impostor):
            log.warning("--peer %s: %d genuine / %d impostor scores on %s, biomatch has %d / %d (another protocol?)",
                        peer_name, sc.genuine.size, sc.impostor.size, name, result.n_genuine, result.n_impostor)
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
        from ..evaluate.plots import plot_match_explanation

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
    from ..evaluate.plots import plot_det, plot_score_histogram

    plot_det((result.genuine, result.impostor), out / "det.png", title=f"DET {label} (all impostors)")
    plot_score_histogram(result.genuine, result.impostor, out / "scores_hist.png", title=f"Scores {label}")
