"""biomatch: biometric matching engine — fingerprint extraction, native matching, 1:N dedup.

Public API::

    with biomatch.Gallery.create("registry") as g:          # embedded, durable 1:N gallery
        report = g.enroll(biomatch.Enrolment("id-1", fingers={1: "r_thumb.png", 2: "r_index.png"}, dpi=500))
        report.decision                                    # "DUPLICATE", "REVIEW" or "UNIQUE"

    from biomatch import extract, FingerprintMatcher, Template
    probe = extract("probe.png", dpi=500)
    score = FingerprintMatcher(probe).match(extract("candidate.png", dpi=500))
"""

from __future__ import annotations

from .errors import BiomatchError
from .params import ExtractionParams, MatchParams
from .template import Template

__version__ = "0.1.0"

__all__ = ["BiomatchError", "ExtractionParams", "MatchParams", "Template", "extract",
           "FingerprintMatcher", "Gallery", "Enrolment", "DedupReport", "__version__"]


def __getattr__(name):
    # Lazy: importing biomatch must not compile numba kernels or load the native module.
    if name == "extract":
        from .extract import extract

        return extract
    if name == "FingerprintMatcher":
        from .match import FingerprintMatcher

        return FingerprintMatcher
    if name in ("Gallery", "Enrolment", "DedupReport"):
        from . import dedup

        return getattr(dedup, name)
    raise AttributeError(f"module 'biomatch' has no attribute {name!r}")
