"""Accuracy and speed evaluation: error rates, the FVC protocol, DET plots.

- :mod:`.metrics` — FMR/FNMR curves, EER (FVC2000 definition), FMR100, FMR1000,
  ZeroFMR, DET points; pure functions over score arrays.
- :mod:`.fvc` — the FVC protocol on a folder of ``<finger>_<impression>.<ext>`` images.
- :mod:`.plots` — DET curves and score histograms (needs matplotlib).
"""

from __future__ import annotations

from .fvc import FvcResult, list_fvc_images, run_fvc
from .metrics import Metrics, compute_metrics, det_points, eer, error_curves, fnmr_at_fmr

__all__ = ["FvcResult", "list_fvc_images", "run_fvc", "Metrics", "compute_metrics", "det_points", "eer",
           "error_curves", "fnmr_at_fmr"]
