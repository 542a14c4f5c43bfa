"""A router in its own process (a Ray task) for the cluster tests: enrol one record at a given moment."""

from __future__ import annotations

import time


def enroll_at(path: str, subject_id: str, person: int, impression: int, start_at: float) -> tuple:
    """Open the distributed gallery, wait until ``start_at`` (time.time()), enrol; (decision, enrolled)."""
    from dedup_util import make_record

    from biomatch.dedup.cluster import DistributedGallery

    rec = make_record(subject_id, person, impression)
    g = DistributedGallery.open(path)
    time.sleep(max(0.0, start_at - time.time()))
    r = g.enroll(rec)
    g.close()
    return r.decision, r.enrolled
