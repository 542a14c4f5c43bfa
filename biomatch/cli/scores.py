"""``biomatch evaluate scores | identification`` and ``biomatch threshold``: from score files.

These commands read any system's score CSV (:mod:`biomatch.evaluate.scorefile`) rather than
images: verification error rates with bootstrap intervals, identification rates from candidate
lists, and the decision threshold for a target FMR or FPIR.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BiomatchError, InvalidInputError
from ._common import EXIT_OK, command_line, list_of, peer, positive_int, rate
from .evaluate import add_bootstrap_options

__all__ = ["add_parsers"]


def add_parsers(sub, esub) -> None:
    """Add ``evaluate scores`` and ``evaluate identification`` to ``esub``, ``threshold`` to ``sub``."""
    f = esub.add_parser("scores", help="error rates with confidence intervals from any system's score CSV",
                        description="Verification error rates of a score file (CSV with columns score and label, "
                                    "1 genuine / 0 impostor, or kind; optional subject [and candidate_subject] "
                                    "for the bootstrap over subjects; see biomatch.evaluate.scorefile).")
    f.add_argument("file", type=Path, metavar="FILE.csv")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.add_argument("--name", default="system", help="system name in the report (default: system)")
    add_bootstrap_options(f)
    f.add_argument("--out", type=Path, metavar="DIR", help="write a report folder (report.md + figures) here")
    f.add_argument("--peer", action="append", default=[], metavar="NAME=CSV", type=peer,
                   help="another system's score CSV on the same data, for the report (repeatable)")
    f.set_defaults(func=cmd_evaluate_scores)

    f = esub.add_parser("identification", help="CMC, rank-k, FNIR at FPIR and hit rate vs penetration "
                                               "from candidate lists",
                        description="Identification rates of a candidate-list CSV: columns probe, candidate, "
                                    "score, mated (1 when the candidate is the probe's identity); optional "
                                    "probe_mated for truncated lists (see biomatch.evaluate.scorefile).")
    f.add_argument("file", type=Path, metavar="FILE.csv")
    f.add_argument("--gallery-size", type=positive_int, metavar="N",
                   help="enrolled entries (default: the number of distinct candidates)")
    f.add_argument("--ranks", type=list_of(int, "ranks"), default=[1, 5, 10], metavar="K,K,...",
                   help="ranks reported (default 1,5,10)")
    f.add_argument("--fpir", type=list_of(float, "rates"), default=[0.1, 0.01, 0.001], metavar="F,F,...",
                   help="FPIRs at which FNIR is reported (default 0.1,0.01,0.001)")
    f.add_argument("--penetration", type=list_of(float, "rates"), default=[0.01, 0.05, 0.1], metavar="P,P,...",
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
    g.add_argument("--fmr", type=rate, help="target false match rate, e.g. 1e-4")
    g.add_argument("--fpir", type=rate, help="target false positive identification rate (candidate-list CSV)")
    add_bootstrap_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--table", type=Path, metavar="OUT.json",
                   help="also write the score -> FMR calibration table (--fmr only)")
    p.add_argument("--matcher", default="", help="matcher name and version stored in the table")
    p.set_defaults(func=cmd_threshold)


def cmd_evaluate_scores(args) -> int:
    from ..evaluate.report import ReportSet, summarize, write_report
    from ..evaluate.scorefile import read_scores

    scores = read_scores(args.file)
    peers = {name: read_scores(path, arg="--peer") for name, path in args.peer}
    s = summarize(scores, n_boot=args.n_boot, seed=args.seed)
    if args.out:
        report = write_report(args.out, [ReportSet(args.file.stem, {args.name: scores, **peers})],
                              title=f"Scores of {args.file.name}", command=command_line(),
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
    from ..evaluate import identification as ident
    from ..evaluate.scorefile import read_searches

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
        from ..evaluate.plots import plot_cmc, plot_penetration

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
    from ..evaluate.thresholds import calibration_table, round_up, threshold_at_fmr, threshold_at_fpir

    if args.fpir is not None:
        if args.table:
            raise InvalidInputError("--table: expected with --fmr (a verification score file), got --fpir")
        from ..evaluate.scorefile import read_searches

        o = read_searches(args.file)
        if not o.n_nonmated:
            raise InvalidInputError(f"{args.file.name}: expected non-mated searches for an FPIR threshold, got none")
        c = threshold_at_fpir(o.nonmated_top_score, args.fpir, mated_scores=o.mate_score if o.n_mated else None,
                              n_boot=args.n_boot, seed=args.seed)
        rate_name, miss, unit = "FPIR", "FNIR", "non-mated searches"
        target = args.fpir
    else:
        from ..evaluate.scorefile import read_scores

        sc = read_scores(args.file)
        c = threshold_at_fmr(sc.impostor, args.fmr, genuine=sc.genuine, impostor_subjects=sc.impostor_subjects,
                             n_boot=args.n_boot, seed=args.seed)
        rate_name, miss, unit = "FMR", "FNMR", "impostor comparisons"
        target = args.fmr
        if args.table:
            table = calibration_table(sc.impostor, sc.genuine, matcher=args.matcher, dataset=str(args.file))
            table.save(args.table)
    if args.json:
        print(json.dumps({**c.to_dict(), "ci95": c.ci.as_list() if c.ci else None}))
        return EXIT_OK
    n_hit = round(c.fmr * c.n_impostor)
    print(f"threshold for {rate_name} <= {target:g}: {round_up(c.threshold, 6):g}  (accept when score >= threshold; "
          f"rounded up to 6 digits; exact: {c.threshold!r})")
    if c.ci is not None:
        print(f"  95% interval of the threshold: [{round_up(c.ci.low, 6):g}, {round_up(c.ci.high, 6):g}] "
              f"({c.ci.method}, {c.ci.n_boot} replicates, seed {c.ci.seed})")
    print(f"  {rate_name} on this set: {100 * c.fmr:.4f}% ({n_hit} of {c.n_impostor} {unit}); "
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
