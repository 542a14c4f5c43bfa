"""Generated ten-finger records for the dedup tests (importable by child processes too)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def finger_seed(person: int, position: int) -> int:
    return person * 16 + position


def make_record(subject_id: str, person: int, impression: int = 0, positions=range(1, 11), metadata=None):
    """An Enrolment of generated person ``person``: impression ``impression`` of each finger."""
    from biomatch.datasets.synthetic import template_impressions
    from biomatch.dedup import Enrolment

    fingers = {p: template_impressions(finger_seed(person, p), impression + 1)[impression] for p in positions}
    return Enrolment(subject_id, fingers, metadata=metadata)
