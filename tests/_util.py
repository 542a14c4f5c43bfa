"""Helpers shared by the tests (importable from every test folder)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("BIOMATCH_DATASETS", REPO.parent / "shared" / "datasets"))


def need_dataset(relative: str) -> Path:
    """Path of a shared dataset folder/file; skip (or fail under CI=true) when missing."""
    path = DATASETS / relative
    if not path.exists():
        msg = f"dataset {relative!r} not found under {DATASETS} (set BIOMATCH_DATASETS)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def need_module(name: str, reason: str):
    """Import an optional dependency that the test extra installs; skip when it is missing, but
    fail under CI=true, where ``pip install -e '.[test]'`` must have brought it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        msg = f"{reason} ({exc})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg, allow_module_level=True)


def synthetic_ridges(h=300, w=280, period=9.0, angle_deg=30.0, seed=0):
    """A ridge pattern with a known period and orientation, plus mild noise (uint8)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    t = np.deg2rad(angle_deg)
    across = -xx * np.sin(t) + yy * np.cos(t)
    img = 128 + 90 * np.cos(2 * np.pi * across / period) + rng.normal(0, 8, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)
