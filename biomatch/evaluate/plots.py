"""Evaluation plots as PNG files: DET (with confidence bands), score histograms, CMC,
hit rate vs penetration, and what an examiner looks at: a print's minutiae and a matched
pair with its paired minutiae connected.

matplotlib is an optional dependency (``pip install biomatch[plot]``), imported inside
each function with the non-interactive ``Agg`` backend; without it the functions
raise :class:`~biomatch.errors.BiomatchError` saying how to install it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import BiomatchError, invalid
from .metrics import check_scores, compute_metrics, det_points

__all__ = ["plot_det", "plot_score_histogram", "plot_cmc", "plot_penetration", "plot_minutiae",
           "plot_matched_pair", "plot_match_explanation"]



def _floor(n: int) -> float:
    """A power of ten below the smallest non-zero rate 1/n; rates of 0 are drawn there on log axes."""
    return 10.0 ** np.floor(np.log10(0.5 / max(n, 1)))


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise BiomatchError("plots need matplotlib: pip install 'biomatch[plot]' (or pip install matplotlib)") from exc
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _curves(curves) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if isinstance(curves, Mapping):
        items = dict(curves)
    elif isinstance(curves, Sequence) and len(curves) == 2 and not isinstance(curves[0], str):
        items = {"": curves}
    else:
        raise invalid("curves", "a (genuine, impostor) pair or a {label: (genuine, impostor)} mapping",
                      type(curves).__name__)
    if not items:
        raise invalid("curves", "at least one (genuine, impostor) pair", "an empty mapping")
    out = {}
    for label, pair in items.items():
        if not isinstance(pair, Sequence) or len(pair) != 2:
            raise invalid(f"curves[{label!r}]", "a (genuine, impostor) pair", type(pair).__name__)
        out[str(label)] = (check_scores(pair[0], f"curves[{label!r}] genuine"),
                           check_scores(pair[1], f"curves[{label!r}] impostor"))
    return out


def plot_det(curves, path: str | Path, *, title: str = "DET curve", bands=None) -> Path:
    """Write a DET curve (FNMR against FMR, log-log) as PNG.

    Parameters
    ----------
    curves : (genuine, impostor) or mapping label -> (genuine, impostor)
        Score arrays; several labelled pairs are drawn on one plot (e.g. biomatch and peers).
        Each label is suffixed with its EER.
    path : path
        Output PNG file (its folder must exist).
    title : str
    bands : mapping label -> DetBand, optional
        Confidence bands (:func:`biomatch.evaluate.bootstrap.det_band`) drawn shaded
        in the colour of the curve with the same label.

    Returns
    -------
    Path of the written file.
    """
    items = _curves(curves)
    bands = dict(bands or {})
    unknown = [k for k in bands if str(k) not in items]
    if unknown:
        raise invalid("bands", f"labels among the curves' {list(items)}", unknown)
    plt = _pyplot()
    fx = _floor(max(i.size for _, i in items.values()))
    fy = _floor(max(g.size for g, _ in items.values()))
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    try:
        for label, (g, i) in items.items():
            fmr, fnmr = det_points(g, i)
            m = compute_metrics(g, i)
            name = f"{label} (EER {100 * m.eer:.2f}%)" if label else f"EER {100 * m.eer:.2f}%"
            (line,) = ax.step(np.maximum(fmr, fx), np.maximum(fnmr, fy), where="post", label=name)
            band = bands.get(label)
            if band is not None:
                ax.fill_between(np.maximum(band.fmr, fx), np.maximum(band.low, fy), np.maximum(band.high, fy),
                                step="post", color=line.get_color(), alpha=0.2, lw=0,
                                label=f"{label} {100 * band.level:.0f}% band ({band.method.split('-')[-1]})".strip())
        for x in (1e-2, 1e-3):
            ax.axvline(x, color="0.85", lw=0.8, zorder=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(fx, 1)
        ax.set_ylim(fy, 1)
        ax.set_xlabel(f"FMR (false match rate; 0 drawn at {fx:g})")
        ax.set_ylabel(f"FNMR (false non-match rate; 0 drawn at {fy:g})")
        ax.grid(True, which="major", alpha=0.3)
        return _finish(fig, ax, title, path, legend_loc="lower left", legend_size=8)
    finally:
        plt.close(fig)


def plot_score_histogram(genuine, impostor, path: str | Path, *, title: str = "Score distributions",
                         bins: int = 50) -> Path:
    """Write overlaid genuine / impostor score histograms (density) as PNG."""
    g = check_scores(genuine, "genuine")
    i = check_scores(impostor, "impostor")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise invalid("bins", "an int >= 1", bins)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    try:
        lo, hi = float(min(g.min(), i.min())), float(max(g.max(), i.max()))
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
        ax.hist(i, bins=edges, density=True, alpha=0.6, label=f"impostor ({i.size})")
        ax.hist(g, bins=edges, density=True, alpha=0.6, label=f"genuine ({g.size})")
        ax.set_xlabel("score")
        ax.set_ylabel("density")
        return _finish(fig, ax, title, path)
    finally:
        plt.close(fig)


def plot_cmc(curves, path: str | Path, *, title: str = "CMC", max_rank: int | None = None) -> Path:
    """Write cumulative match characteristic curves (identification rate against rank) as PNG.

    Parameters
    ----------
    curves : SearchOutcomes or mapping label -> SearchOutcomes
    path : path
    max_rank : int, optional
        Last rank drawn (default: each gallery size, at most 100).
    """
    from .identification import SearchOutcomes, cmc

    items = {"": curves} if isinstance(curves, SearchOutcomes) else dict(curves)
    if not items or not all(isinstance(o, SearchOutcomes) for o in items.values()):
        raise invalid("curves", "a SearchOutcomes or a {label: SearchOutcomes} mapping", type(curves).__name__)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    try:
        for label, o in items.items():
            r = max_rank or min(o.gallery_size or int(o.mate_rank.max()) or 1, 100)
            ranks, hit = cmc(o, r)
            ax.step(ranks, 100 * hit, where="post", marker="." if r <= 30 else None,
                    label=f"{label} rank-1 {100 * hit[0]:.1f}%".strip())
        ax.set_xlabel("rank")
        ax.set_ylabel("identification rate (%)")
        ax.grid(True, alpha=0.3)
        return _finish(fig, ax, title, path, legend_loc="lower right")
    finally:
        plt.close(fig)


def plot_penetration(curves, path: str | Path, *, title: str = "Hit rate vs penetration") -> Path:
    """Write hit rate against penetration rate (log x) as PNG.

    Parameters
    ----------
    curves : (penetration, hit_rate) or mapping label -> (penetration, hit_rate)
        From :func:`~biomatch.evaluate.identification.penetration_curve` or
        :func:`~biomatch.evaluate.identification.hit_penetration_by_threshold`.
    """
    items = {"": curves} if not isinstance(curves, Mapping) else dict(curves)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    try:
        for label, pair in items.items():
            if not isinstance(pair, Sequence) or len(pair) != 2:
                raise invalid(f"curves[{label!r}]", "a (penetration, hit_rate) pair", type(pair).__name__)
            pen, hit = np.asarray(pair[0], float), np.asarray(pair[1], float)
            if pen.shape != hit.shape or pen.ndim != 1:
                raise invalid(f"curves[{label!r}]", "two 1-d arrays of one length", (pen.shape, hit.shape))
            keep = pen > 0
            ax.step(pen[keep], 100 * hit[keep], where="post", label=label or None)
        ax.set_xscale("log")
        ax.set_xlabel("penetration rate (share of the gallery searched)")
        ax.set_ylabel("hit rate (%)")
        ax.grid(True, which="major", alpha=0.3)
        return _finish(fig, ax, title, path, legend_loc="lower right", legend=any(items))
    finally:
        plt.close(fig)


_KIND_STYLE = {1: ("tab:red", "ending"), 2: ("tab:blue", "bifurcation"), 0: ("tab:green", "other")}


def _grey(image, name: str) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 2 or a.size == 0:
        raise invalid(f"{name}.shape", "a 2-d greyscale image at 500 dpi", a.shape)
    return a


def _draw_minutiae(ax, minutiae, dx: float = 0.0, tick_px: float = 10.0, labels: bool = True) -> None:
    for kind, (colour, name) in _KIND_STYLE.items():
        sel = minutiae[minutiae["kind"] == kind]
        if sel.size == 0:
            continue
        x, y, a = sel["x"] + dx, sel["y"], sel["angle"]
        ax.scatter(x, y, s=22, facecolors="none", edgecolors=colour, linewidths=1.1,
                   label=f"{name} ({sel.size})" if labels else None)
        # angle counter-clockwise as displayed, y downwards: the tick goes up for pi/2.
        ax.plot(np.stack([x, x + tick_px * np.cos(a)]), np.stack([y, y - tick_px * np.sin(a)]),
                color=colour, lw=1.0)


def plot_minutiae(image, template, path: str | Path, *, title: str = "Minutiae") -> Path:
    """Write a print with its minutiae overlaid (circles with direction ticks) as PNG.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W)
        The print at 500 dpi (:func:`biomatch.imaging.load_fingerprint`), the frame of the
        template's coordinates.
    template : Template
    path : path
    """
    img = _grey(image, "image")
    plt = _pyplot()
    h, w = img.shape
    fig, ax = plt.subplots(figsize=(5, 5 * h / w + 0.4), dpi=110)
    try:
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        _draw_minutiae(ax, template.minutiae)
        ax.set_axis_off()
        return _finish(fig, ax, f"{title} ({len(template)} minutiae, quality {template.quality})", path,
                       legend_loc="lower right", legend_size=7)
    finally:
        plt.close(fig)


def plot_matched_pair(image_a, template_a, image_b, template_b, pairs, path: str | Path, *,
                      title: str = "Matched pair", score: float | None = None) -> Path:
    """Write two prints side by side with their paired minutiae connected, as PNG.

    Parameters
    ----------
    image_a, image_b : ndarray of uint8, shapes (Ha, Wa) and (Hb, Wb)
        Prints at 500 dpi.
    template_a, template_b : Template
    pairs : (ndarray of int, ndarray of int)
        Indices of paired minutiae in ``template_a`` and ``template_b`` (e.g.
        ``FingerprintMatcher(a).explain(b)["elastic_pairs"]``).
    score : float, optional
        Shown in the title.
    """
    a, b = _grey(image_a, "image_a"), _grey(image_b, "image_b")
    ia, ib = (np.asarray(p, dtype=np.int64) for p in pairs)
    if ia.shape != ib.shape or ia.ndim != 1:
        raise invalid("pairs", "two 1-d index arrays of one length", (ia.shape, ib.shape))
    for idx, t, name in ((ia, template_a, "pairs[0]"), (ib, template_b, "pairs[1]")):
        if idx.size and (idx.min() < 0 or idx.max() >= len(t)):
            raise invalid(name, f"indices in [0, {len(t)})", int(idx.max() if idx.max() >= len(t) else idx.min()))
    gap = 20
    h = max(a.shape[0], b.shape[0])
    canvas = np.full((h, a.shape[1] + gap + b.shape[1]), 255, np.uint8)
    canvas[:a.shape[0], :a.shape[1]] = a
    canvas[:b.shape[0], a.shape[1] + gap:] = b
    dx = a.shape[1] + gap
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 5 * h / canvas.shape[1] * 2 + 0.4), dpi=110)
    try:
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=255)
        _draw_minutiae(ax, template_a.minutiae)
        _draw_minutiae(ax, template_b.minutiae, dx=dx, labels=False)
        ma, mb = template_a.minutiae, template_b.minutiae
        for i, j in zip(ia, ib):
            ax.plot([ma["x"][i], mb["x"][j] + dx], [ma["y"][i], mb["y"][j]], color="gold", lw=0.9, alpha=0.85)
        ax.plot([], [], color="gold", label=f"paired minutiae ({ia.size})")
        ax.set_axis_off()
        full = title if score is None else f"{title}: score {score:.4f}"
        return _finish(fig, ax, full, path, legend_loc="lower right", legend_size=7)
    finally:
        plt.close(fig)


def plot_match_explanation(image_a, image_b, dpi: float, path: str | Path, *, title: str = "Matched pair") -> dict:
    """Extract, match and draw two prints (:func:`plot_matched_pair`) with biomatch's own pipeline.

    The pairs drawn are the elastic stage's one-to-one pairs of the best anchor
    (``explain()["elastic_pairs"]``), else the rigid-fit ones (``"consistent_pairs"``),
    else the LSS-R top pairs.

    Returns
    -------
    dict
        ``explain()``'s breakdown plus ``"png"`` (the path) and ``"pairs_key"``.
    """
    from ..extract import extract
    from ..imaging import load_fingerprint
    from ..match import FingerprintMatcher

    ga, gb = load_fingerprint(image_a, dpi), load_fingerprint(image_b, dpi)
    ta, tb = extract(ga, 500), extract(gb, 500)
    info = FingerprintMatcher(ta).explain(tb) if len(ta) and len(tb) else {"score": 0.0}
    key = next((k for k in ("elastic_pairs", "consistent_pairs", "top_pairs") if len(info.get(k, ((),))[0])),
               None)
    pairs = info[key] if key else ((), ())
    out = plot_matched_pair(ga, ta, gb, tb, pairs, path, title=title, score=float(info["score"]))
    return {**info, "png": out, "pairs_key": key}


def _finish(fig, ax, title: str, path, legend_loc: str = "best", legend_size=None, legend: bool = True) -> Path:
    """Title, legend, layout and PNG file: the common end of every plot."""
    ax.set_title(title)
    if legend:
        ax.legend(loc=legend_loc, fontsize=legend_size)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    return out
