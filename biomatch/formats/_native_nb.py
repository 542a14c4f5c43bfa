"""Numba kernel of :mod:`biomatch.formats.native`: the value checks of a decoded template, in one pass."""

from __future__ import annotations

import numba
import numpy as np

from ..template import MINUTIA_DTYPE

_ROW = MINUTIA_DTYPE.itemsize  # 14: x, y, angle f32, kind u8, quality u8
assert _ROW == 14 and MINUTIA_DTYPE.names == ("x", "y", "angle", "kind", "quality")


@numba.njit(cache=True, nogil=True)
def minutiae_ok(raw: np.ndarray, angle_max: np.float32) -> bool:
    """True when every minutia holds values :class:`~biomatch.template.Template` accepts.

    Parameters
    ----------
    raw : uint8 (n, 14)
        Packed MINUTIA_DTYPE records.
    angle_max : float32
        Angles must lie in [0, angle_max) radians (``2 pi`` plus the Template's tolerance);
        kind 0-2, quality 0-100, coordinates finite.
    """
    for i in range(raw.shape[0]):
        xya = raw[i, :12].view(np.float32)
        if not (np.isfinite(xya[0]) and np.isfinite(xya[1]) and np.isfinite(xya[2])):
            return False
        if xya[2] < 0 or xya[2] >= angle_max or raw[i, 12] > 2 or raw[i, 13] > 100:
            return False
    return True
