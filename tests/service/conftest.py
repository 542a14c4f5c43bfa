"""Fixtures of the service tests: one generated gallery and one real server shared by a test module."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest.importorskip("fastapi", reason="the service extra is not installed")
pytest.importorskip("uvicorn", reason="the service extra is not installed")

from service_util import Server, make_gallery, make_keys  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``(server, keys, gallery path)``: 12 generated people, a 1 MiB request limit."""
    root = tmp_path_factory.mktemp("svc")
    gallery = make_gallery(root / "g")
    keys = make_keys(gallery)
    server = Server(gallery, "--max-request-mb", "1").start()
    try:
        yield server, keys, gallery
    finally:
        server.stop()
