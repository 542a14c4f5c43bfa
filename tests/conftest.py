"""Shared fixtures: the real datasets in ../shared/datasets (skipped when absent, failing under CI=true)."""

from __future__ import annotations

import os
from pathlib import Path

import sys

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/_util.py for every test folder

from _util import DATASETS, need_dataset, synthetic_ridges  # noqa: E402,F401

@pytest.fixture(scope="session")
def triple():
    """The SourceAFIS probe / matching / non-matching trio (500 dpi PNG)."""
    folder = need_dataset("samples/sourceafis_triple")
    return {name: folder / f"{name}.png" for name in ("probe", "matching", "nonmatching")}


