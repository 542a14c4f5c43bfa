"""Quality 0-100 of a fingerprint image: the extractor runs, then the quality score of its stages.

The score's stage (features, model, calibration) is :mod:`biomatch.extract.quality_score`, which the
extractor runs for every template; this module sits above the pipeline because it runs all of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..params import ExtractionParams, QualityParams
from . import extract
from .quality_score import ImageQuality, QualityFeatures, image_quality_from_capture, quality_features, quality_score

__all__ = ["image_quality", "ImageQuality", "QualityFeatures", "image_quality_from_capture", "quality_features",
           "quality_score"]


def image_quality(image: np.ndarray | str | Path, dpi: float, params: ExtractionParams | None = None,
                  quality_params: QualityParams | None = None) -> ImageQuality:
    """Quality 0-100 of a fingerprint image (the features and the model: :mod:`biomatch.extract.quality_score`).

    Parameters
    ----------
    image : ndarray or path
        As for :func:`~biomatch.extract.extract`.
    dpi : float
        Resolution of ``image``, as for :func:`~biomatch.extract.extract`.
    params : ExtractionParams, optional
    quality_params : QualityParams, optional

    Returns
    -------
    ImageQuality
        ``.score`` is the 0-100 integer; ``.features`` what it was computed from.

    Raises
    ------
    InvalidInputError, ImageError
        As :func:`~biomatch.extract.extract`.

    Examples
    --------
    >>> from biomatch.extract.image_quality import image_quality
    >>> image_quality("101_1.tif", dpi=500).score  # doctest: +SKIP
    47

    Notes
    -----
    Runs the extractor (about 25-35 ms); the quality itself adds about 1-2 ms.  Deterministic
    and thread-safe.
    """
    cap: dict = {}
    template = extract(image, dpi, params, capture=cap)
    return image_quality_from_capture(cap, template, params=params, quality_params=quality_params)
