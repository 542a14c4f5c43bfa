"""The 1:N decision: evidence per finger and face, their fusion, and the verdict.

Stages, each one module::

    params    DecisionParams: target error rates, evidence caps, the re-ranking cascade
    evidence  native score (or face cosine) -> decades of false-match rate, -log10 FMR
    fusion    the evidence of k terms -> one per-subject score, -log10 P_k(E)
    verdict   thresholds from the target FPIRs and the gallery size -> DUPLICATE / REVIEW / UNIQUE

Pure functions over small arrays; :mod:`biomatch.dedup` calls them while re-ranking (in each
shard) and when merging (in the router).  Imports only the layers below (the matcher's and the
face matcher's calibration tables).

Example
-------
>>> from biomatch import decide
>>> p = decide.DecisionParams(score_at_fmr=((0.01, 0.2), (0.001, 0.3)))
>>> round(decide.fuse({1: 0.3}, p), 6)
3.0
>>> decide.decide(8.1, decide.thresholds(100_000, p))
'DUPLICATE'
"""

from __future__ import annotations

from .evidence import calibrate, face_evidence, finger_evidence
from .fusion import CandidateEvidence, escalates, fuse, fuse_candidates, fuse_evidence
from .params import DecisionParams
from .verdict import (DUPLICATE, REVIEW, UNIQUE, Thresholds, decide, refused, thresholds, verdict, verify,
                      verify_threshold)

__all__ = ["DecisionParams", "Thresholds", "calibrate", "finger_evidence", "face_evidence", "fuse", "fuse_evidence",
           "thresholds", "decide", "DUPLICATE", "REVIEW", "UNIQUE", "verdict", "refused", "verify",
           "verify_threshold", "CandidateEvidence", "fuse_candidates", "escalates"]
