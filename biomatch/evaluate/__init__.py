"""Accuracy and speed evaluation: error rates, identification, intervals, thresholds, reports.

- :mod:`.metrics` — FMR/FNMR curves, EER (FVC2000 definition), FMR100/1000/10000,
  ZeroFMR, ZeroFNMR, DET and ROC points; pure functions over score arrays.
- :mod:`.identification` — CMC, rank-k, FNIR at FPIR (open set), hit rate vs penetration.
- :mod:`.bootstrap` — confidence intervals by bootstrap over subjects; the rule of 3.
- :mod:`.thresholds` — threshold for a target FMR / FPIR; score -> FMR calibration tables.
- :mod:`.fusion` — score normalisation and logistic (log-likelihood-ratio) fusion.
- :mod:`.scorefile` — score CSVs from any system (verification and candidate lists).
- :mod:`.fvc` — the FVC protocol on a folder of ``<finger>_<impression>.<ext>`` images.
- :mod:`.plots` — DET (with bands), histograms, CMC, penetration, minutiae and matched pairs
  (needs matplotlib).
- :mod:`.report` — a report folder: Markdown tables with intervals and the figures.
"""

from __future__ import annotations

from .bootstrap import Interval, eer_ci, fnmr_at_fmr_ci, metrics_ci, rule_of_three
from .fusion import ScoreFusion, ScoreNormalizer, fit_fusion, fit_normalizer
from .fvc import FvcResult, list_fvc_images, run_fvc
from .identification import (SearchOutcomes, cmc, fnir_at_fpir, hit_rate_at_penetration, outcomes_from_matrix,
                             outcomes_from_rows, penetration_curve, rank_k)
from .metrics import Metrics, compute_metrics, det_points, eer, error_curves, fnmr_at_fmr, roc_points
from .scorefile import ScoreSet, read_scores, read_searches
from .thresholds import CalibrationTable, calibration_table, threshold_at_fmr, threshold_at_fpir

__all__ = ["FvcResult", "list_fvc_images", "run_fvc", "Metrics", "compute_metrics", "det_points", "eer",
           "error_curves", "fnmr_at_fmr", "roc_points",
           "SearchOutcomes", "outcomes_from_rows", "outcomes_from_matrix", "cmc", "rank_k", "fnir_at_fpir",
           "penetration_curve", "hit_rate_at_penetration",
           "Interval", "eer_ci", "fnmr_at_fmr_ci", "metrics_ci", "rule_of_three",
           "CalibrationTable", "calibration_table", "threshold_at_fmr", "threshold_at_fpir",
           "ScoreNormalizer", "fit_normalizer", "ScoreFusion", "fit_fusion",
           "ScoreSet", "read_scores", "read_searches"]
