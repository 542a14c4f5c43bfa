"""DET and histogram PNGs; a clear error without matplotlib."""

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from biomatch.errors import BiomatchError, InvalidInputError
from biomatch.evaluate.plots import plot_det, plot_score_histogram

PNG = b"\x89PNG\r\n\x1a\n"


def scores(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(2, 1, 200), rng.normal(0, 1, 2000)


def test_det_single_curve(tmp_path):
    out = plot_det(scores(), tmp_path / "det.png")
    assert out.read_bytes()[:8] == PNG


def test_det_several_curves_on_one_plot(tmp_path):
    out = plot_det({"biomatch": scores(0), "peer": scores(1)}, tmp_path / "det.png", title="DB1_B")
    assert out.read_bytes()[:8] == PNG


def test_det_perfect_separation_does_not_fail_on_log_axes(tmp_path):
    """No error rate is 0 on a log axis: zeros are drawn at the floor, so the curve is still on
    the plot (its colour present), not dropped or turned into a warning and an empty frame."""
    import cv2

    out = plot_det(([5.0, 6.0], [0.0, 1.0]), tmp_path / "det.png")
    assert out.read_bytes()[:8] == PNG
    img = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[0] > 100 and img.shape[1] > 100
    # matplotlib's first colour (C0, #1f77b4: BGR 180, 119, 31) draws the curve; the legend sits
    # bottom left, so the right half holds the curve alone
    right = img[:, img.shape[1] // 2:].astype(int)
    curve = (np.abs(right - [180, 119, 31]).sum(axis=2) < 60).sum()
    assert curve > 50, curve


def test_histogram(tmp_path):
    g, i = scores()
    assert plot_score_histogram(g, i, tmp_path / "h.png").read_bytes()[:8] == PNG
    plot_score_histogram([1.0], [1.0], tmp_path / "same.png")  # all scores equal


@pytest.mark.parametrize("bad", [{}, "abc", {"x": ([1.0], [float("nan")])}])
def test_det_bad_input(tmp_path, bad):
    with pytest.raises(InvalidInputError):
        plot_det(bad, tmp_path / "det.png")


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(BiomatchError, match="matplotlib"):
        plot_det(scores(), tmp_path / "det.png")


# --------------------------------------------------------------------------- issue 6 plots

def test_det_with_band(tmp_path):
    from biomatch.evaluate.bootstrap import det_band

    g, i = scores()
    band = det_band(g, i, genuine_subjects=np.arange(200) % 20, impostor_subjects=np.arange(2000) % 20, n_boot=50)
    out = plot_det({"biomatch": (g, i), "peer": scores(1)}, tmp_path / "det.png", bands={"biomatch": band})
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(InvalidInputError, match="bands: expected labels among the curves"):
        plot_det({"a": (g, i)}, tmp_path / "x.png", bands={"b": band})


def test_cmc_and_penetration(tmp_path):
    from biomatch.evaluate.identification import outcomes_from_matrix, penetration_curve
    from biomatch.evaluate.plots import plot_cmc, plot_penetration

    rng = np.random.default_rng(0)
    s = rng.normal(0, 1, (20, 50))
    mate = np.arange(20)
    s[mate, mate] += 2
    o = outcomes_from_matrix(s, mate)
    assert plot_cmc({"x": o}, tmp_path / "cmc.png").read_bytes()[:8] == PNG
    assert plot_cmc(o, tmp_path / "cmc1.png", max_rank=5).read_bytes()[:8] == PNG
    assert plot_penetration({"x": penetration_curve(o)}, tmp_path / "pen.png").read_bytes()[:8] == PNG
    with pytest.raises(InvalidInputError, match="curves"):
        plot_cmc({"x": (1, 2)}, tmp_path / "bad.png")


def test_minutiae_overlay_and_matched_pair(tmp_path):
    from biomatch.evaluate.plots import plot_matched_pair, plot_minutiae
    from biomatch.template import Template

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (120, 100), dtype=np.uint8)
    t = Template.from_arrays(rng.uniform(0, 100, 12), rng.uniform(0, 120, 12), rng.uniform(0, 6, 12),
                             width=100, height=120, print_quality=50)
    assert plot_minutiae(img, t, tmp_path / "m.png").read_bytes()[:8] == PNG
    pairs = (np.arange(5), np.arange(5)[::-1])
    out = plot_matched_pair(img, t, img[:100], t, pairs, tmp_path / "p.png", score=0.42)
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(InvalidInputError, match=r"pairs\[1\]: expected indices in \[0, 12\)"):
        plot_matched_pair(img, t, img, t, (np.array([0]), np.array([12])), tmp_path / "q.png")
    with pytest.raises(InvalidInputError, match="image.shape"):
        plot_minutiae(np.zeros((3, 3, 3)), t, tmp_path / "r.png")


def test_match_explanation_on_real_prints(triple, tmp_path):
    from biomatch.evaluate.plots import plot_match_explanation

    info = plot_match_explanation(triple["probe"], triple["matching"], 500, tmp_path / "pair.png")
    assert info["png"].read_bytes()[:8] == PNG and info["pairs_key"] in ("elastic_pairs", "consistent_pairs")
    assert info["score"] > 0.1
