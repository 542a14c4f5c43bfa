"""Generated ten-finger records for the dedup tests (importable by child processes too)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def ensure_dedup_importable() -> None:
    """Load biomatch.dedup from the source tree when a stale editable mapping hides it."""
    import biomatch.dedup as pkg

    if getattr(pkg, "__file__", None):
        return
    init = REPO / "biomatch" / "dedup" / "__init__.py"
    spec = importlib.util.spec_from_file_location("biomatch.dedup", init, submodule_search_locations=[str(init.parent)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["biomatch.dedup"] = mod
    spec.loader.exec_module(mod)


def finger_seed(person: int, position: int) -> int:
    return person * 16 + position


def make_record(subject_id: str, person: int, impression: int = 0, positions=range(1, 11), metadata=None):
    """An Enrolment of generated person ``person``: impression ``impression`` of each finger."""
    ensure_dedup_importable()
    from biomatch.datasets.synthetic import template_impressions
    from biomatch.dedup import Enrolment

    fingers = {p: template_impressions(finger_seed(person, p), impression + 1)[impression] for p in positions}
    return Enrolment(subject_id, fingers, metadata=metadata)
