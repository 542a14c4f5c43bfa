"""DET curves and score histograms as PNG files.

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

__all__ = ["plot_det", "plot_score_histogram"]



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


def plot_det(curves, path: str | Path, *, title: str = "DET curve") -> Path:
    """Write a DET curve (FNMR against FMR, log-log) as PNG.

    Parameters
    ----------
    curves : (genuine, impostor) or mapping label -> (genuine, impostor)
        Score arrays; several labelled pairs are drawn on one plot (e.g. biomatch and peers).
        Each label is suffixed with its EER.
    path : path
        Output PNG file (its folder must exist).
    title : str

    Returns
    -------
    Path of the written file.
    """
    items = _curves(curves)
    plt = _pyplot()
    fx = _floor(max(i.size for _, i in items.values()))
    fy = _floor(max(g.size for g, _ in items.values()))
    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    try:
        for label, (g, i) in items.items():
            fmr, fnmr = det_points(g, i)
            m = compute_metrics(g, i)
            name = f"{label} (EER {100 * m.eer:.2f}%)" if label else f"EER {100 * m.eer:.2f}%"
            ax.step(np.maximum(fmr, fx), np.maximum(fnmr, fy), where="post", label=name)
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


def _finish(fig, ax, title: str, path, legend_loc: str = "best", legend_size=None) -> Path:
    """Title, legend, layout and PNG file: the common end of every plot."""
    ax.set_title(title)
    ax.legend(loc=legend_loc, fontsize=legend_size)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png")
    return out
