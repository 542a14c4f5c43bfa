"""Stage 9: whole-image fingerprint quality 0-100, in the spirit of NFIQ 2 (ISO/IEC 29794-4).

Five features are read from what extraction has already computed (no new filtering):

==================  ======================================================  ===============
feature             what it measures                                        NFIQ 2 analogue
==================  ======================================================  ===============
``area_mm2``        foreground (segmentation mask) area, mm²                ROI area
``coherence``       mean orientation coherence over interior blocks         OCL
``clarity``         mean per-block correlation between the normalised       LCS, FDA
                    image and its Gabor-enhanced version: the share of the
                    grey-level pattern that a clean ridge pattern at the
                    local orientation and period explains
``ridge_fraction``  fraction of foreground blocks with a reliable ridge     RVU, FDA
                    period (the others show no periodic pattern)
``n_minutiae``      minutiae kept in the template (reported; weight 0 by    minutiae count
                    default: not monotone in quality, see QualityParams)
==================  ======================================================  ===============

Model. Each print is given a probability ``u`` of *not* causing a false non-match, and a
genuine pair of prints ``a, b`` is assumed to succeed with probability ``u_a * u_b``;
``u = sigmoid(z)`` with ``z`` a weighted sum of the (monotone) features, whose weights are
constrained non-negative, so that the score can only rise when a feature improves.  The
weights (:class:`~biomatch.params.QualityParams`) were fitted by maximum likelihood on
*generated* prints with known degradations (partial contact, contrast loss, blur, noise;
``benchmarks/quality_evr.py fit``), never on the public sets used to validate the score.
The score is the estimated failure probability ``1 - u`` in decibels::

    score = -20 log10(1 - u) = 20 log10(1 + exp(z)),   clipped to 0..100, rounded

so every 20 points is a tenfold lower estimated chance that the print, compared with a mate,
fails at the operating threshold of FMR = 0.1%.  A print that extraction finds unusable (no
foreground, too small, no ridge pattern, no minutiae) scores 0.

The probabilities are calibrated on generated prints only; on real sensors read the score as a
ranking.  Medians: FVC2002 DB1_B 55, DB2_B 56, DB3_B 42, DB4_B 38, SOCOFing (real and altered)
33.  Validation (error versus reject, FNMR at FMR = 0.1% as the lowest-quality images are
rejected): ``benchmarks/quality_evr.py``, ``docs/quality_evr.png``.  The score of an image file
(the extractor run first): :func:`biomatch.extract.image_quality.image_quality`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np

from ..errors import invalid
from ..params import ExtractionParams, QualityParams, WORKING_DPI

__all__ = ["QualityFeatures", "ImageQuality", "quality_features", "quality_score", "image_quality_from_capture"]

_PX_PER_MM = WORKING_DPI / 25.4


@dataclass(frozen=True)
class QualityFeatures:
    """The quality features of one print (see the module docstring).

    Attributes
    ----------
    area_mm2 : float
        Foreground area in mm² (at the declared resolution).
    coherence : float
        Mean orientation coherence of interior blocks, 0 (isotropic) to 1.
    clarity : float
        Mean normalised correlation of the normalised image with the enhanced one over
        interior blocks, -1 to 1 (about 0.6-0.9 on FVC2002 prints).
    ridge_fraction : float
        Fraction of foreground blocks with a reliable ridge period, 0 to 1.
    n_minutiae : int
        Minutiae in the template.
    minutiae_quality : float
        Mean per-minutia quality (0-100); reported, not used by the model.

    Notes
    -----
    Immutable and thread-safe; a few dozen bytes.
    """

    area_mm2: float = 0.0
    coherence: float = 0.0
    clarity: float = 0.0
    ridge_fraction: float = 0.0
    n_minutiae: int = 0
    minutiae_quality: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class ImageQuality:
    """A print's quality score and the features it was computed from.

    Attributes
    ----------
    score : int
        0 (unusable) to 100.
    features : QualityFeatures
    logit : float
        The model's linear predictor ``z`` (``-inf`` for an unusable print), for ranking
        without the rounding to integers.

    Notes
    -----
    Immutable and thread-safe.
    """

    score: int
    features: QualityFeatures
    logit: float

    def __int__(self) -> int:
        return self.score


def _block_sums(a: np.ndarray, b: int) -> np.ndarray:
    """Sum of ``a`` over each whole ``b x b`` block: shape ``(h // b, w // b)``."""
    bh, bw = a.shape[0] // b, a.shape[1] // b
    return a[: bh * b, : bw * b].reshape(bh, b, bw, b).sum(axis=(1, 3), dtype=np.float64)


def quality_features(mask: np.ndarray, normalised: np.ndarray, coherence: np.ndarray, enhanced: np.ndarray,
                     block_period: np.ndarray, minutiae_quality: np.ndarray, *,
                     params: ExtractionParams | None = None,
                     quality_params: QualityParams | None = None) -> QualityFeatures:
    """Quality features from the extraction's intermediate results (all at 500 dpi).

    Parameters
    ----------
    mask : uint8 (h, w)
        Foreground mask (capture key ``"mask"``).
    normalised, coherence, enhanced : float32 (h, w)
        Capture keys ``"normalised"``, ``"coherence"``, ``"enhanced"``.
    block_period : float32 (h // B, w // B)
        Raw per-block ridge period, 0 where unreliable, on blocks of
        ``params.block_size_px`` = B (:func:`~biomatch.extract.frequency.ridge_period`'s
        second result).
    minutiae_quality : uint8 (n,)
        The template's per-minutia qualities (``template.minutiae["quality"]``).

    Returns
    -------
    QualityFeatures
        All zero when the mask is empty.

    Notes
    -----
    About 1 ms for a 400 x 400 image: four products and block sums, no filtering.
    """
    p = ExtractionParams() if params is None else params
    qp = QualityParams() if quality_params is None else quality_params
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise invalid("mask", "a 2-d array", mask.shape)
    for name, a in (("normalised", normalised), ("coherence", coherence), ("enhanced", enhanced)):
        if np.shape(a) != mask.shape:
            raise invalid(name, f"shape {mask.shape} (the mask's)", np.shape(a))
    mq = np.asarray(minutiae_quality)
    n_min = int(mq.size)
    mq_mean = float(mq.mean()) if n_min else 0.0
    fg_px = int(np.count_nonzero(mask))
    if fg_px == 0:
        return QualityFeatures(n_minutiae=n_min, minutiae_quality=mq_mean)
    area = fg_px / _PX_PER_MM**2

    b = qp.block_size_px
    m = (mask > 0).astype(np.float32)
    inside = _block_sums(m, b) >= b * b  # blocks entirely on the print
    if not inside.any():  # a thin print: take the blocks mostly on it
        inside = _block_sums(m, b) >= 0.5 * b * b
    n = np.asarray(normalised, np.float32)
    e = np.asarray(enhanced, np.float32)
    if inside.any():
        coh = float((_block_sums(np.asarray(coherence, np.float32), b)[inside] / (b * b)).mean())
        ne = _block_sums(n * e, b)[inside]
        nn = _block_sums(n * n, b)[inside]
        ee = _block_sums(e * e, b)[inside]
        clarity = float(np.mean(ne / np.sqrt(nn * ee + 1e-12)))
    else:
        coh = clarity = 0.0

    # Ridge period reliability on the extraction's own blocks, counted at the block centres
    # that lie on the (refined) foreground, as biomatch.extract.quality.ridge_fraction does.
    bp = np.asarray(block_period)
    pb = p.block_size_px
    centres = mask[pb // 2::pb, pb // 2::pb][: bp.shape[0], : bp.shape[1]] > 0
    fg_blocks = bp[: centres.shape[0], : centres.shape[1]][centres]
    ridges = float((fg_blocks > 0).mean()) if fg_blocks.size else 0.0
    return QualityFeatures(area_mm2=area, coherence=coh, clarity=clarity, ridge_fraction=ridges,
                           n_minutiae=n_min, minutiae_quality=mq_mean)


def _logit(f: QualityFeatures, qp: QualityParams) -> float:
    return (qp.bias
            + qp.weight_log_area * math.log(max(f.area_mm2, 1e-3) / 100.0)
            + qp.weight_coherence * f.coherence
            + qp.weight_clarity * f.clarity
            + qp.weight_ridge_fraction * f.ridge_fraction
            + qp.weight_minutiae * min(f.n_minutiae, qp.minutiae_cap))


def _usable(f: QualityFeatures, qp: QualityParams) -> bool:
    return f.area_mm2 >= qp.min_area_mm2 and f.n_minutiae > 0


def quality_score(features: QualityFeatures, quality_params: QualityParams | None = None) -> ImageQuality:
    """The 0-100 score of a set of features (see the module docstring for the model).

    Returns
    -------
    ImageQuality
        Score 0 when the print is unusable: area below ``min_area_mm2`` or no minutiae.
    """
    qp = QualityParams() if quality_params is None else quality_params
    if not isinstance(features, QualityFeatures):
        raise invalid("features", "a QualityFeatures", type(features).__name__)
    if not _usable(features, qp):
        return ImageQuality(0, features, -math.inf)
    z = _logit(features, qp)
    # 20 log10(1 + e^z), computed without overflow for large z.
    db = qp.score_db_per_decade * (max(z, 0.0) + math.log1p(math.exp(-abs(z)))) / math.log(10.0)
    return ImageQuality(int(min(100, max(0, round(db)))), features, z)


def image_quality_from_capture(capture: Mapping[str, object], template, *, params: ExtractionParams | None = None,
                               quality_params: QualityParams | None = None) -> ImageQuality:
    """The quality of a print from :func:`~biomatch.extract.extract`'s captured intermediates.

    Parameters
    ----------
    capture : mapping
        The ``capture`` dict filled by ``extract(image, dpi, capture=capture)``.  Uses
        ``"mask"``, ``"normalised"``, ``"coherence"``, ``"enhanced"`` and, when present,
        ``"block_period"`` (recomputed from ``"normalised"`` and ``"orientation"``
        otherwise, about 0.7 ms).
    template : Template
        The template ``extract`` returned (an empty one scores 0).
    """
    p = ExtractionParams() if params is None else params
    if len(template) == 0 or "enhanced" not in capture:
        mask = capture.get("mask")
        area = float(np.count_nonzero(mask)) / _PX_PER_MM**2 if isinstance(mask, np.ndarray) else 0.0
        return ImageQuality(0, QualityFeatures(area_mm2=area), -math.inf)
    block_period = capture.get("block_period")
    if block_period is None:
        from . import _orientation_nb as nb

        b = p.block_size_px
        block_period, _ = nb.block_ridge_period(capture["normalised"], capture["orientation"], capture["mask"],
                                                b, 2 * b + 8, b, p.ridge_period_min_px, p.ridge_period_max_px,
                                                p.ridge_peak_min, p.ridge_peak_min)
    f = quality_features(capture["mask"], capture["normalised"], capture["coherence"], capture["enhanced"],
                         block_period, template.minutiae["quality"], params=p, quality_params=quality_params)
    return quality_score(f, quality_params)
