"""What an input image may be: its pixel count, the memory its decode may take, its resolution.

One place for the limits every reader applies (see :mod:`biomatch.imaging` for the policy
against decompression bombs); the WSQ codec and the AN2K reader use the same ones.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import invalid

__all__ = ["MIN_DPI", "MAX_DPI", "MAX_IMAGE_PIXELS", "MAX_FACE_IMAGE_PIXELS", "READ_BYTES_PER_PIXEL", "check_dpi"]

MIN_DPI = 100.0
MAX_DPI = 2000.0
MAX_IMAGE_PIXELS = 40_000_000
"""Largest finger image read, in pixels (width x height).

A 1000 ppi rolled or slap capture is about 3200 x 3000 (10 Mpx); a whole ten-print card at
1000 ppi is about 16 Mpx; 40 Mpx leaves room for 2000 ppi captures (6300 x 6300) and oversized
scans. Anything larger is not a finger image (and extraction only keeps 2000 px per side at
500 dpi anyway). Also the limit of :mod:`biomatch.imaging.wsq`.
"""
MAX_FACE_IMAGE_PIXELS = 50_000_000
"""Largest face photo read, in pixels: a camera's own full-resolution output up to 50 Mpx
(48-50 Mpx phone sensors, 8160 x 6120; 24-45 Mpx DSLRs). A face needs far fewer (ISO/IEC
19794-5: 90 px between the eyes; detection works on 1280 px), but refusing a camera's own
files would push callers into ad-hoc resizing."""
READ_BYTES_PER_PIXEL = 8
"""Memory a read may use, in bytes per allowed pixel (``max_pixels``): the estimated peak of
the file held, the decoder's buffers and the output must fit in this x ``max_pixels``."""


def check_dpi(dpi: object) -> float:
    """Validate a resolution in dots per inch."""
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float, np.integer, np.floating)):
        raise invalid("dpi", f"a number in [{MIN_DPI:g}, {MAX_DPI:g}]", dpi)
    value = float(dpi)
    if not math.isfinite(value) or not MIN_DPI <= value <= MAX_DPI:
        raise invalid("dpi", f"a number in [{MIN_DPI:g}, {MAX_DPI:g}]", dpi)
    return value
