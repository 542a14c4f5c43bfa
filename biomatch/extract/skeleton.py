"""Stage 5: thinning of the binary ridge map to a one-pixel skeleton."""

from __future__ import annotations

import numpy as np

from . import _skeleton_nb as nb

__all__ = ["skeletonise"]


def skeletonise(binary: np.ndarray) -> np.ndarray:
    """Thin ridges to an 8-connected skeleton one pixel wide (Guo & Hall 1989).

    Parameters
    ----------
    binary : uint8 (h, w)
        1 on ridges.

    Returns
    -------
    uint8 (h, w)
        1 on the skeleton.
    """
    skel = np.ascontiguousarray(binary, np.uint8).copy()
    nb.thin(skel, nb.GUO_HALL_LUT)
    return skel
