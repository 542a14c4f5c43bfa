"""Fixtures of the dedup tests: generated ten-finger records (no images), fresh galleries."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parent))
from dedup_util import make_record  # noqa: E402




@pytest.fixture(params=["faiss", "exhaustive"])
def gallery(tmp_path, request):
    from biomatch.dedup import Gallery

    g = Gallery.create(tmp_path / "g", retrieval=request.param)
    yield g
    g.close()


@pytest.fixture
def record():
    return make_record
