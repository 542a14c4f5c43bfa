"""An evaluation report folder: one Markdown file with the tables, and its PNG figures.

Layout of ``OUT``::

    OUT/report.md             tables (with confidence intervals) and links to the figures
    OUT/figures/<set>_det.png DET curves of every system on the set, with the main system's band
    OUT/figures/<set>_hist.png, <set>_cmc.png, <set>_*.png (examples)
    OUT/calibration.json      score -> FMR table of the main system, impostors of all sets pooled

The first system of each set is the *main* one (biomatch): it gets the confidence band,
the histogram and the calibration table; the others (peers, from score files) appear in
the tables and on the DET plot. Everything is computed from :class:`~.scorefile.ScoreSet`
objects, so a report can mix biomatch's own run with any system's score CSV.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BiomatchError, invalid
from .bootstrap import det_band, metrics_ci
from .identification import SearchOutcomes, cmc, rank_k
from .metrics import compute_metrics
from .scorefile import ScoreSet
from .thresholds import calibration_table, round_up, threshold_at_fmr

__all__ = ["summarize", "ReportSet", "write_report", "format_rate", "format_ci"]

log = logging.getLogger(__name__)

RATES = (("fmr100", 1e-2), ("fmr1000", 1e-3), ("fmr10000", 1e-4))


def summarize(scores: ScoreSet, *, n_boot: int = 1000, seed: int | None = 0, level: float = 0.95) -> dict:
    """Error rates of one score set with bootstrap intervals, as a JSON-ready dict.

    Returns
    -------
    dict
        ``eer``, ``eer_low``, ``eer_high`` (FVC interval), ``fmr100``, ``fmr1000``,
        ``fmr10000``, ``zerofmr``, ``zerofnmr`` (fractions); ``eer_ci95``, ``fmr100_ci95``,
        ``fmr1000_ci95``, ``fmr10000_ci95`` (two-element lists; ``ci99`` etc. for another
        ``level``); ``ci_method`` (per rate); ``n_genuine``, ``n_impostor``, ``n_subjects``,
        ``subject_source``, ``n_boot``, ``seed``, ``ci_level``; ``fmr1000_resolved`` and
        ``fmr10000_resolved`` (False with fewer impostors than 1/FMR: the rate is then ZeroFMR).
    """
    m = compute_metrics(scores.genuine, scores.impostor)
    ci = metrics_ci(scores.genuine, scores.impostor, **scores.subjects(), fmrs=RATES, n_boot=n_boot,
                    level=level, seed=seed)
    tag = f"ci{round(100 * level)}"
    out = m.to_dict()
    for key, interval in ci.items():
        out[f"{key}_{tag}"] = interval.as_list()
    out["ci_method"] = {k: v.method for k, v in ci.items()}
    out.update(n_subjects=scores.n_subjects, subject_source=scores.subject_source, n_boot=n_boot, seed=seed,
               ci_level=level)
    for key, f in RATES:
        out[f"{key}_resolved"] = bool(m.n_impostor * f >= 1 - 1e-9)
    return out


def format_rate(x: float) -> str:
    return f"{100 * x:.2f}%"


def format_ci(ci) -> str:
    return f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"


@dataclass
class ReportSet:
    """One dataset of a report.

    Attributes
    ----------
    name : str
        Section title and file-name stem (e.g. ``"db1_b"``).
    systems : dict str -> ScoreSet
        Score sets by system name; the first is the main system.
    facts : dict str -> str
        Extra lines of the section (resolution, timings, ...).
    identification : SearchOutcomes, optional
        Main system's searches, for a CMC figure.
    identification_note : str
        How the searches were built.
    examples : list of (caption, path)
        Extra figures already written (paths inside the report folder).
    """

    name: str
    systems: dict
    facts: dict = field(default_factory=dict)
    identification: SearchOutcomes | None = None
    identification_note: str = ""
    examples: list = field(default_factory=list)


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def _rate_cell(s: dict, key: str) -> str:
    text = f"{format_rate(s[key])} {format_ci(s[key + '_ci95'])}"
    if key in ("fmr1000", "fmr10000") and not s[f"{key}_resolved"]:
        text += " ‡"
    return text


def write_report(out: str | Path, sets: list[ReportSet], *, title: str = "biomatch evaluation",
                 command: str = "", n_boot: int = 1000, seed: int | None = 0, intro: str = "",
                 plots: bool = True) -> Path:
    """Write ``OUT/report.md`` (and its figures and ``calibration.json``); see the module docstring.

    Parameters
    ----------
    out : path
        Report folder (created).
    sets : list of ReportSet
    title, command, intro : str
        Heading, the command that produced the report, and a free paragraph.
    n_boot, seed : int
        Bootstrap replicates and seed of every interval.
    plots : bool
        Draw figures (needs matplotlib); False writes the tables only.

    Returns
    -------
    Path of ``report.md``.
    """
    if not sets:
        raise invalid("sets", "at least one ReportSet", "none")
    out = Path(out)
    fig = out / "figures"
    try:
        fig.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BiomatchError(f"--out: cannot create {str(out)!r}: {exc.strerror}") from exc
    from .. import __version__

    main_name = next(iter(sets[0].systems))
    summaries = {rs.name: {name: summarize(sc, n_boot=n_boot, seed=seed) for name, sc in rs.systems.items()}
                 for rs in sets}
    md = [f"# {title}", ""]
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md.append(f"biomatch {__version__}, generated {when}" + (f" by `{command}`" if command else "") + ".")
    md.append("")
    if intro:
        md += [intro, ""]
    first = summaries[sets[0].name][main_name]
    unit = {"FVC fingers": "fingers", "": "comparisons"}.get(first["subject_source"], "subjects")
    md.append(f"Rates are fractions of comparisons, as percentages. Brackets: 95% bootstrap interval over "
              f"{unit} ({n_boot} replicates, seed {seed}; the rule of 3 bound when no error is observed). "
              f"EER: FVC2000 definition. FMR100 / FMR1000 / FMR10000: lowest FNMR at FMR <= 1% / 0.1% / 0.01%. "
              f"‡: fewer impostor comparisons than 1/FMR, so the figure is ZeroFMR, not a measured FMR10000.")
    md.append("")

    # -- summary of the main system
    md += ["## Summary", "", f"Main system: **{main_name}**.", ""]
    rows = []
    for rs in sets:
        s = summaries[rs.name].get(main_name)
        if s is None:
            continue
        rows.append([rs.name, _rate_cell(s, "eer"), _rate_cell(s, "fmr100"), _rate_cell(s, "fmr1000"),
                     format_rate(s["zerofmr"]), f"{s['n_genuine']} / {s['n_impostor']}"])
    if len(rows) > 1:
        main = [summaries[rs.name][main_name] for rs in sets if main_name in summaries[rs.name]]
        rows.append(["**mean**"] + [f"**{format_rate(np.mean([s[k] for s in main]))}**"
                                    for k in ("eer", "fmr100", "fmr1000", "zerofmr")] + [""])
    md += _md_table(["set", "EER", "FMR100", "FMR1000", "ZeroFMR", "genuine / impostor"], rows)

    peers = sorted({n for rs in sets for n in rs.systems if n != main_name})
    if peers:
        md += ["## Side by side", "", "Same images, same protocol; peers' scores read from their score files.", ""]
        rows = []
        for rs in sets:
            for name, s in summaries[rs.name].items():
                rows.append([rs.name, name if name != main_name else f"**{name}**", _rate_cell(s, "eer"),
                             _rate_cell(s, "fmr100"), _rate_cell(s, "fmr1000")])
        md += _md_table(["set", "system", "EER", "FMR100", "FMR1000"], rows)

    # -- calibration of the main system, impostors of all sets pooled
    mains = [rs.systems[main_name] for rs in sets if main_name in rs.systems]
    pooled_g = np.concatenate([s.genuine for s in mains])
    pooled_i = np.concatenate([s.impostor for s in mains])
    subj = None
    if all(s.impostor_subjects is not None for s in mains):
        subj = np.concatenate([np.char.add(f"{rs.name}:", rs.systems[main_name].impostor_subjects.astype(str))
                               for rs in sets if main_name in rs.systems])
    table = calibration_table(pooled_i, pooled_g, matcher=f"{main_name} {__version__}",
                              dataset=", ".join(rs.name for rs in sets))
    table.save(out / "calibration.json")
    md += ["## Thresholds", "",
           f"{main_name}: threshold for a target FMR from the impostor scores of all sets pooled "
           f"({pooled_i.size} impostor, {pooled_g.size} genuine comparisons); interval of the threshold by "
           f"bootstrap over {'subjects' if subj is not None else 'comparisons'}; upper bound of the FMR: "
           f"Clopper-Pearson 95% (rule of 3 when 0). Thresholds are rounded up to 4 digits (the safe side). "
           f"Full score -> FMR table: `calibration.json`.", ""]
    rows = []
    for f in (1e-2, 1e-3, 1e-4):
        c = threshold_at_fmr(pooled_i, f, genuine=pooled_g, impostor_subjects=subj, n_boot=n_boot, seed=seed)
        note = "" if c.resolved else " (below resolution)"
        rows.append([f"{f:g}", f"{round_up(c.threshold):g}{note}",
                     f"[{round_up(c.ci.low):g}, {round_up(c.ci.high):g}]",
                     f"{100 * c.fmr:.3g}%", f"{100 * c.fmr_upper:.3g}%", format_rate(c.fnmr)])
    md += _md_table(["target FMR", "threshold", "95% interval", "FMR observed", "FMR upper 95%", "FNMR"], rows)

    # -- one section per set
    for rs in sets:
        md += [f"## {rs.name}", ""]
        for k, v in rs.facts.items():
            md.append(f"- {k}: {v}")
        if rs.facts:
            md.append("")
        rows = []
        for name, s in summaries[rs.name].items():
            rows.append([name, _rate_cell(s, "eer"), f"{format_rate(s['eer_low'])}-{format_rate(s['eer_high'])}",
                         _rate_cell(s, "fmr100"), _rate_cell(s, "fmr1000"), _rate_cell(s, "fmr10000"),
                         format_rate(s["zerofmr"]), format_rate(s["zerofnmr"]),
                         f"{s['n_genuine']} / {s['n_impostor']}"])
        md += _md_table(["system", "EER", "EER interval (FVC)", "FMR100", "FMR1000", "FMR10000", "ZeroFMR",
                         "ZeroFNMR", "genuine / impostor"], rows)
        if plots:
            md += _figures(rs, fig, main_name, n_boot, seed)
        elif rs.identification is not None:
            md += [f"Rank-1 identification: {format_rate(rank_k(rs.identification, 1))}.", ""]
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path


def _figures(rs: ReportSet, fig: Path, main_name: str, n_boot: int, seed) -> list[str]:
    from .plots import plot_cmc, plot_det, plot_score_histogram

    md = []
    curves = {name: (s.genuine, s.impostor) for name, s in rs.systems.items()}
    main = rs.systems.get(main_name)
    bands = {}
    if main is not None:
        bands[main_name] = det_band(main.genuine, main.impostor, **main.subjects(), n_boot=min(n_boot, 500),
                                    seed=seed)
    det = plot_det(curves, fig / f"{rs.name}_det.png", title=f"DET {rs.name}", bands=bands)
    md += [f"![DET {rs.name}](figures/{det.name})", ""]
    if main is not None:
        h = plot_score_histogram(main.genuine, main.impostor, fig / f"{rs.name}_hist.png",
                                 title=f"{main_name} scores, {rs.name}")
        md += [f"![scores {rs.name}](figures/{h.name})", ""]
    if rs.identification is not None:
        c = plot_cmc({main_name: rs.identification}, fig / f"{rs.name}_cmc.png", title=f"CMC {rs.name}")
        ranks, hit = cmc(rs.identification)
        md += [f"Identification ({rs.identification_note}): rank-1 {format_rate(hit[0])}"
               + (f", rank-5 {format_rate(hit[min(4, hit.size - 1)])}" if hit.size > 1 else "") + ".", "",
               f"![CMC {rs.name}](figures/{c.name})", ""]
    for caption, path in rs.examples:
        md += [f"{caption}", "", f"![{caption}]({Path(path).relative_to(fig.parent).as_posix()})", ""]
    return md
