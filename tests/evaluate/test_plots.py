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
    plot_det(([5.0, 6.0], [0.0, 1.0]), tmp_path / "det.png")


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
