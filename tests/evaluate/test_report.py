"""The report folder: Markdown tables with intervals, figures, calibration table."""

import json

import numpy as np
import pytest

from biomatch.errors import InvalidInputError
from biomatch.evaluate.identification import outcomes_from_matrix
from biomatch.evaluate.report import ReportSet, summarize, write_report
from biomatch.evaluate.scorefile import ScoreSet
from biomatch.evaluate.thresholds import CalibrationTable


def score_set(seed, shift=3.0):
    rng = np.random.default_rng(seed)
    gs = np.repeat(np.arange(20), 5).astype(str)
    isub = np.repeat(np.arange(20), 50).astype(str)
    return ScoreSet(rng.normal(shift, 1, gs.size), rng.normal(0, 1, isub.size), gs, isub, "subject column")


def test_summarize_keys_and_reproducibility():
    s = summarize(score_set(0), n_boot=100, seed=3)
    for key in ("eer", "fmr100", "fmr1000", "fmr10000", "zerofmr", "eer_ci95", "n_genuine", "n_impostor"):
        assert key in s
    assert len(s["eer_ci95"]) == 2 and s["eer_ci95"][0] <= s["eer"] <= s["eer_ci95"][1]
    assert s["fmr1000_resolved"] and not s["fmr10000_resolved"]
    assert s == summarize(score_set(0), n_boot=100, seed=3)
    json.dumps(s)


def test_report_with_peer_and_identification(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(1)
    m = rng.normal(0, 1, (30, 10))
    mate = np.arange(30) % 10
    m[np.arange(30), mate] += 3
    sets = [ReportSet("set_a", {"biomatch": score_set(1), "peer": score_set(2, 1.5)}, facts={"dpi": "500"},
                      identification=outcomes_from_matrix(m, mate), identification_note="closed set"),
            ReportSet("set_b", {"biomatch": score_set(3)})]
    path = write_report(tmp_path / "rep", sets, n_boot=50, seed=0, title="T", command="biomatch x")
    md = path.read_text()
    assert md.startswith("# T") and "## Summary" in md and "## Side by side" in md and "## Thresholds" in md
    assert "| **mean** |" in md and "figures/set_a_det.png" in md and "figures/set_a_cmc.png" in md
    for name in ("set_a_det.png", "set_a_hist.png", "set_a_cmc.png", "set_b_det.png"):
        assert (tmp_path / "rep" / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    table = CalibrationTable.load(tmp_path / "rep" / "calibration.json")
    assert table.n_impostor == 2000 and table.dataset == "set_a, set_b"


def test_report_tables_only(tmp_path):
    path = write_report(tmp_path, [ReportSet("s", {"x": score_set(4)})], n_boot=20, plots=False)
    assert "| x |" in path.read_text() and not list((tmp_path / "figures").iterdir())


def test_report_needs_a_set(tmp_path):
    with pytest.raises(InvalidInputError, match="sets: expected at least one ReportSet"):
        write_report(tmp_path, [])
