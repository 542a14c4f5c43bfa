"""The service's tunables in one frozen parameter object (units in the names)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from ..errors import invalid

__all__ = ["ServiceParams"]


@dataclass(frozen=True)
class ServiceParams:
    """Limits and defaults of the HTTP service.

    Attributes
    ----------
    max_request_bytes : int
        Largest request body accepted; a larger one is answered 413 before it is parsed (a
        ten-finger record of 500 dpi WSQ images is ~0.3-1 MB, of PNGs 1-3 MB).
    max_concurrent_searches : int
        Gallery operations (extraction included) running at once; the rest wait in a queue
        whose depth ``/metrics`` reports.  More than the CPUs only makes searches contend.
    max_identify_k : int
        Largest ``k`` of an identification.
    max_audit_results : int
        Most entries one audit query returns.
    keep_images : bool
        Keep the submitted finger and face images of enrolled subjects and REVIEW probes
        (:mod:`.images`), sealed with the gallery's data key; refused on an unencrypted gallery
        unless ``keep_images_in_clear``.
    keep_images_in_clear : bool
        Allow ``keep_images`` on an unencrypted gallery (the images are then readable on disk).
    """

    max_request_bytes: int = 32 * 2**20
    max_concurrent_searches: int = max(1, os.cpu_count() or 1)
    max_identify_k: int = 100
    max_audit_results: int = 1000
    keep_images: bool = False
    keep_images_in_clear: bool = False

    def __post_init__(self):
        for name, low in (("max_request_bytes", 1024), ("max_concurrent_searches", 1), ("max_identify_k", 1),
                          ("max_audit_results", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise invalid(name, f"an int >= {low}", v)
        for name in ("keep_images", "keep_images_in_clear"):
            if not isinstance(getattr(self, name), bool):
                raise invalid(name, "a bool", getattr(self, name))

    def as_dict(self) -> dict:
        return asdict(self)
