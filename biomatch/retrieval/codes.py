"""Fixed-length binary codes of fingers, for exhaustive Hamming search (candidate retrieval).

One code per finger, computed from its minutiae only::

    minutiae ──► window ──► pair histogram ──► sqrt, L2 ──► PCA whitening ──► ITQ rotation ──► sign
               (plain-     (distance x two          (D)          (n_bits)                      (n_bits)
                sized)      relative angles)

0. *Window*: of a print wider than a plain impression (``window_from_width_mm``: a rolled print,
   nail to nail), only the minutiae within a plain-sized window around their centre of mass
   take part (``window_width_mm`` across the finger, i.e. along the image's x axis: ten-print
   capture holds rolled prints upright).  A rolled print then keeps the pad's centre, which is
   what a plain print of the same finger holds, instead of adding pairs from its sides that no
   plain print shows; a plain print keeps every minutia, so its code is unchanged.  Width is
   measured from the minutiae's span across the finger (x between the 5th and 95th
   percentiles, over 0.9).  Measured on generated ten-print cards (``benchmarks/rolled_plain.py
   --codes``): plain prints 11.2 mm wide (median), rolled 21.6 mm (1st percentile 15.7); no
   print of FVC2002 DB1-4_B, SOCOFing or the generated plain populations is wider than 15.3 mm.
   The one stage that is not rotation invariant: a rolled print turned far from upright is cut
   across the wrong axis (still a plain-sized part of it).
1. *Pair histogram*: every ordered pair of minutiae at most ``max_distance_px`` apart votes
   (linear soft binning) for its distance and the directions of both minutiae relative to
   the segment joining them (``distance_bins x angle_bins x angle_bins`` cells).  Invariant
   to rotation and translation by construction, and degrades gracefully when minutiae are
   missed or spurious (a lost minutia removes its pairs only).  It is the sum, over the
   minutiae, of an MCC-like local structure in polar form (Cappelli, Ferrara & Maltoni,
   TPAMI 2010), i.e. the one-word limit of a VLAD of local descriptors.
2. Square root (Hellinger) and L2 normalisation, so that contact area matters less.
3. *PCA whitening* to ``n_bits`` dimensions and an *ITQ* rotation (Gong & Lazebnik,
   CVPR 2011); the sign of each dimension is one bit.

Why a pair histogram and not a VLAD of per-minutia descriptors: word assignments of noisy
local descriptors are unstable, so mates separate less (``benchmarks/retrieval.py`` measures
the separation).  The histogram is symmetric under swapping the pair, so only about half of
its 1,200 cells are free: 512 bits is the useful maximum.

Mean, whitening and rotation form an :class:`EncodeModel`, trained once offline
(:mod:`biomatch.retrieval.training`, on generated templates from
:mod:`biomatch.datasets.code_training`) and shipped as ``biomatch/data/encode_model.npz``.
This module is the runtime encoder only: it loads and applies a model, it never trains one.
The model stores its :class:`EncodeParams`; ``params hash + model hash``
(:attr:`EncodeModel.generation`) identifies a code generation: codes of different
generations must never be compared.

A template with fewer than ``min_minutiae`` minutiae or no pair within reach (for
instance an empty template) gets the all-zero code and ``valid = False``.

Thread-safety: every function is thread-safe; a loaded model is immutable and shared.
"""

from __future__ import annotations

import functools
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .._io import write_private_atomic
from ..errors import EncodeModelError, invalid
from ..params import from_json, params_hash, stored_params_hash, to_json
from ..template import Template
from . import _codes_nb as nb

__all__ = ["EncodeParams", "EncodeModel", "EncodeModelError", "DEFAULT_MODEL_PATH",
           "finger_code", "finger_codes", "default_model", "hamming", "check_templates", "pair_histograms",
           "ProbeWeights", "probe_weights", "plane_scores", "WEIGHT_PLANES"]


DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "data" / "encode_model.npz"
"""The shipped model (package data)."""

_MODEL_FORMAT = 1

PX_PER_MM = 500 / 25.4
"""Template pixels per millimetre (templates are at 500 dpi)."""


@dataclass(frozen=True)
class EncodeParams:
    """Parameters of the finger code (lengths in px at 500 dpi or in mm as named, angles in degrees).

    Window (stage 0 of the module docstring): a print wider than ``window_from_width_mm`` (its
    minutiae's span across the finger, image x, between their 5th and 95th percentiles, over
    0.9) keeps only the minutiae inside the ellipse of full axes ``window_width_mm`` (across the
    finger) by ``window_height_mm`` (along it) centred on their centre of mass; 0 leaves an axis
    unbounded (the defaults: a band 12 mm wide), both axes 0 is no window (the codes of
    generations before it), ``window_from_width_mm`` 0 windows every print.
    """

    max_distance_px: float = 150.0  # pairs farther apart do not vote (about 16 ridge periods)
    window_width_mm: float = 12.0  # a plain impression's width (generated slaps' prints: 11.2 mm median)
    window_height_mm: float = 0.0  # rolled and plain prints are equally long (tip to crease)
    window_from_width_mm: float = 16.0  # rolled prints 21.6 mm (1st percentile 15.7); plain at most 15.3
    distance_bins: int = 12
    angle_bins: int = 10  # per relative angle (36 degrees)
    min_minutiae: int = 4  # fewer minutiae: the all-zero code, valid=False
    n_bits: int = 512  # code length (multiple of 64), at most distance_bins * angle_bins**2
    # Training (offline, generated templates: biomatch.retrieval.training); part of the generation.
    training_fingers: int = 8000
    training_impressions: int = 2
    itq_iterations: int = 30
    seed: int = 1

    def __post_init__(self):
        v = self.max_distance_px
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise invalid("max_distance_px", "a number > 0", v)
        for name in ("window_width_mm", "window_height_mm", "window_from_width_mm"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1000:
                raise invalid(name, "a number of mm in [0, 1000] (0: unbounded)", v)
        for name, lo, hi in (("distance_bins", 1, 256), ("angle_bins", 1, 64), ("min_minutiae", 2, 1000),
                             ("n_bits", 64, 65536), ("training_fingers", 1, 10**7),
                             ("training_impressions", 1, 100), ("itq_iterations", 0, 10_000),
                             ("seed", 0, 2**31 - 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise invalid(name, f"an int in [{lo}, {hi}]", v)
        if self.n_bits % 64:
            raise invalid("n_bits", "a multiple of 64", self.n_bits)
        if self.n_bits > self.histogram_size:
            raise invalid("n_bits", f"at most distance_bins * angle_bins**2 = {self.histogram_size}", self.n_bits)

    @property
    def histogram_size(self) -> int:
        return self.distance_bins * self.angle_bins ** 2

    @property
    def n_bytes(self) -> int:
        return self.n_bits // 8


_ARRAYS = ("mean", "projection")


@dataclass(frozen=True, eq=False)
class EncodeModel:
    """A trained encoder: histogram mean and binarising projection.

    Attributes
    ----------
    params : EncodeParams
    mean : float32 (D,)
        Mean normalised pair histogram of the training set, ``D = params.histogram_size``.
    projection : float32 (D, n_bits)
        PCA whitening times the ITQ rotation.

    Notes
    -----
    Immutable and thread-safe.  4 x D x n_bits bytes (1.3 MiB for the defaults).
    """

    params: EncodeParams
    mean: np.ndarray
    projection: np.ndarray

    def __post_init__(self):
        p = self.params
        if not isinstance(p, EncodeParams):
            raise invalid("params", "an EncodeParams", type(p).__name__)
        shapes = {"mean": (p.histogram_size,), "projection": (p.histogram_size, p.n_bits)}
        for name, shape in shapes.items():
            a = np.array(getattr(self, name), np.float32, order="C")
            if a.shape != shape or not np.all(np.isfinite(a)):
                raise EncodeModelError(f"encode model: {name} expected finite float32 {shape}, got {a.shape}")
            a.flags.writeable = False
            object.__setattr__(self, name, a)

    @functools.cached_property
    def model_hash(self) -> str:
        """16 hex digits over the parameters and every array (not the file bytes)."""
        return self._hash(params_hash(self.params))

    def _hash(self, params_digest: str) -> str:
        h = hashlib.sha256(params_digest.encode())
        for name in _ARRAYS:
            a = getattr(self, name)
            h.update(f"{name}{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()[:16]

    @property
    def generation(self) -> str:
        """``<params hash>-<model hash>``: codes of different generations are not comparable."""
        return f"{params_hash(self.params)}-{self.model_hash}"

    def save(self, path: str | Path) -> None:
        """Write the model as an ``.npz`` (atomic)."""
        buf = io.BytesIO()
        np.savez(buf, format=np.array(_MODEL_FORMAT), params=np.array(to_json(self.params)),
                 model_hash=np.array(self.model_hash), **{n: getattr(self, n) for n in _ARRAYS})
        write_private_atomic(Path(path), buf.getvalue())
        Path(path).chmod(0o644)  # package data, not personal data

    @classmethod
    def load(cls, path: str | Path) -> "EncodeModel":
        """Read and verify a model written by :meth:`save`."""
        try:
            with np.load(Path(path), allow_pickle=False) as z:
                fmt = int(z["format"])
                if fmt != _MODEL_FORMAT:
                    raise EncodeModelError(f"encode model {path}: expected format {_MODEL_FORMAT}, got {fmt}")
                text = str(z["params"])
                params = from_json(text, EncodeParams)
                stored = str(z["model_hash"])
                arrays = {n: z[n] for n in _ARRAYS}
        except EncodeModelError:
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise EncodeModelError(f"encode model {path}: cannot read ({exc})") from exc
        model = cls(params, **arrays)
        # Checked over the parameters as written: a file saved before a field existed lacks it and
        # reads with the value that reproduces its codes (biomatch.params._ADDED_FIELDS); its
        # generation is then that of the full parameter set, as every model's.
        got = model._hash(stored_params_hash(text, EncodeParams))
        if got != stored:
            raise EncodeModelError(f"encode model {path}: expected hash {stored}, got {got} (corrupt)")
        return model


@functools.lru_cache(maxsize=1)
def default_model() -> EncodeModel:
    """The shipped model (loaded once per process)."""
    if not DEFAULT_MODEL_PATH.exists():
        raise EncodeModelError(f"encode model: expected the package file {DEFAULT_MODEL_PATH}, it is missing")
    return EncodeModel.load(DEFAULT_MODEL_PATH)


# ----------------------------------------------------------------------------- stages
def _batch_points(templates: Sequence[Template]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the minutiae (x, y, angle) of all templates, with row offsets."""
    counts = np.fromiter((len(t.minutiae) for t in templates), np.int64, len(templates))
    offsets = np.zeros(len(templates) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    pts = np.empty((int(offsets[-1]), 3), np.float32)
    if len(pts):
        # One concatenation in C instead of three slice assignments per template (bulk loading
        # encodes ~10^5 templates per call).
        m = np.concatenate([t.minutiae for t in templates])
        pts[:, 0], pts[:, 1], pts[:, 2] = m["x"], m["y"], m["angle"]
    return pts, offsets


def _wide(x: np.ndarray, offsets: np.ndarray, limit_px: float) -> np.ndarray:
    """``bool (t,)``: the templates wider across the finger than ``limit_px``.

    A template's width is the span of its minutiae's x between the 5th and the 95th percentile
    (nearest rank), over 0.9 (the full width of a uniform band with that span).  Percentiles, not
    the extremes nor the standard deviation: a few spurious minutiae at the border of a small print
    (SOCOFing's) made a 15 mm print look 19 mm wide by its standard deviation.  Only the templates
    whose extremes are far enough apart are sorted (a plain-only batch: few or none).
    """
    counts = np.diff(offsets)
    wide = np.zeros(len(counts), bool)
    has = np.flatnonzero(counts > 0)
    if not len(has):
        return wide
    starts = offsets[:-1][has]
    span = np.maximum.reduceat(x, starts) - np.minimum.reduceat(x, starts)
    for t in has[span > 0.9 * limit_px]:
        xs = np.sort(x[offsets[t]:offsets[t + 1]])
        last = len(xs) - 1
        wide[t] = xs[int(np.rint(0.95 * last))] - xs[int(np.rint(0.05 * last))] > 0.9 * limit_px
    return wide


def _windowed(pts: np.ndarray, offsets: np.ndarray, p: EncodeParams) -> tuple[np.ndarray, np.ndarray]:
    """The minutiae of each template inside its window (stage 0), with their row offsets.

    Parameters
    ----------
    pts : float32 (m, 3)
        ``x, y`` (px at 500 dpi) and angle of every template's minutiae, concatenated.
    offsets : int64 (t + 1,)

    Returns
    -------
    The same arrays (not copied) when no minutia falls outside its window, else the kept rows.
    """
    wx, wy = p.window_width_mm, p.window_height_mm
    if not (wx or wy) or not len(pts):
        return pts, offsets
    wide = None
    if p.window_from_width_mm:
        wide = _wide(pts[:, 0], offsets, p.window_from_width_mm * PX_PER_MM)
        if not wide.any():
            return pts, offsets  # every print narrower than a rolled one: nothing to cut
    counts = np.diff(offsets)
    owner = np.repeat(np.arange(len(counts)), counts)
    n = np.maximum(counts, 1)
    r2 = np.zeros(len(pts))
    for axis, full_mm in ((0, wx), (1, wy)):
        if full_mm:
            v = pts[:, axis].astype(np.float64)
            centre = np.bincount(owner, v, len(counts)) / n
            r2 += ((v - centre[owner]) / (0.5 * full_mm * PX_PER_MM)) ** 2
    keep = r2 <= 1.0
    if wide is not None:
        keep |= ~wide[owner]
    if keep.all():
        return pts, offsets
    out = np.zeros_like(offsets)
    np.cumsum(np.bincount(owner[keep], minlength=len(counts)), out=out[1:])
    return np.ascontiguousarray(pts[keep]), out


def pair_histograms(templates: Sequence[Template], p: EncodeParams) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pair histograms ``float32 (t, D)`` and validity ``bool (t,)`` (stages 0-2)."""
    pts, offsets = _windowed(*_batch_points(templates), p)
    h = nb.pair_histograms(pts, offsets, float(p.max_distance_px), p.distance_bins, p.angle_bins)
    np.sqrt(h, out=h)
    norms = np.linalg.norm(h, axis=1)
    valid = (np.diff(offsets) >= p.min_minutiae) & (norms > 0)
    h /= np.maximum(norms, 1e-12)[:, None]
    return h, valid


@functools.lru_cache(maxsize=8)
def _pool(n_threads: int):
    """A process-wide pool of ``n_threads`` threads (kept: bulk loading codes every batch)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(n_threads, thread_name_prefix="biomatch-codes")


def check_templates(templates, name: str) -> list:
    """``templates`` as a list, each checked to be a :class:`~biomatch.template.Template`."""
    if isinstance(templates, Template):
        raise invalid(name, "a sequence of Template (use finger_code for one)", "a Template")
    try:
        out = list(templates)
    except TypeError:
        raise invalid(name, "a sequence of Template", type(templates).__name__) from None
    for i, t in enumerate(out):
        if not isinstance(t, Template):
            raise invalid(f"{name}[{i}]", "a biomatch Template", type(t).__name__)
    return out


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_blas_thread():
    """Limit BLAS to one thread around a small product.  A probe's projection (10 x 1200 x 512)
    took 11 ms of CPU with OpenBLAS's two threads on a loaded 2-core machine, 1.1 ms with one;
    parallelism belongs to the caller (shards, processes)."""
    return _blas_controller().limit(limits=1, user_api="blas")


def finger_codes(templates: Iterable[Template], model: EncodeModel | None = None, *,
                 return_valid: bool = False, n_threads: int = 1):
    """Binary codes of many fingers.

    Parameters
    ----------
    templates : sequence of Template
        Minutiae templates at 500 dpi.
    model : EncodeModel, optional
        Defaults to the shipped model (:func:`default_model`).
    return_valid : bool
        Also return the validity flags.
    n_threads : int
        Threads for large batches (histograms and projection in chunks; the codes do not
        depend on it).  1 (default): the caller's thread only.

    Returns
    -------
    codes : uint8 (n, n_bytes)
        Packed bits, most significant bit first (``np.packbits`` order), ready for a FAISS
        binary index.  All zeros where ``valid`` is False.
    valid : bool (n,)
        Only if ``return_valid``: False for templates with fewer than ``min_minutiae``
        minutiae or no pair within ``max_distance_px`` (for instance empty templates).

    Raises
    ------
    InvalidInputError
        ``templates`` is not a sequence of :class:`~biomatch.template.Template`.
    EncodeModelError
        The model is missing or corrupt.

    Notes
    -----
    About 15,000-20,000 codes per second per core for templates of ~30 minutiae (the pair
    kernel ~45 us, half of it ``atan2f``; the projection ~15-20 us); pass many templates at
    once, and ``n_threads`` for large batches.  Thread-safe; the numba kernels release the GIL.

    Examples
    --------
    >>> from biomatch.datasets.synthetic import template_impressions
    >>> a, b = template_impressions(7, 2)
    >>> codes = finger_codes([a, b])
    >>> codes.shape, codes.dtype
    ((2, 64), dtype('uint8'))
    """
    ts = check_templates(templates, "templates")
    mdl = default_model() if model is None else model
    if not isinstance(mdl, EncodeModel):
        raise invalid("model", "an EncodeModel", type(mdl).__name__)
    n_bytes = mdl.params.n_bytes
    if not ts:
        codes = np.zeros((0, n_bytes), np.uint8)
        return (codes, np.zeros(0, bool)) if return_valid else codes
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or not 1 <= n_threads <= 256:
        raise invalid("n_threads", "an int in [1, 256]", n_threads)
    codes = np.empty((len(ts), n_bytes), np.uint8)
    valid = np.empty(len(ts), bool)

    def run(a: int, b: int) -> None:
        # One chunk from minutiae to bits: its histograms (4.8 KB per template) stay in cache and
        # a large batch never holds them all at once (50,000 fingers would be 240 MB).
        h, valid[a:b] = pair_histograms(ts[a:b], mdl.params)
        codes[a:b] = np.packbits(((h - mdl.mean) @ mdl.projection) > 0, axis=1)

    chunks = [(a, min(a + _CHUNK, len(ts))) for a in range(0, len(ts), _CHUNK)]
    with _one_blas_thread():
        if n_threads > 1 and len(chunks) > 1:
            # Chunks are independent rows: the codes do not depend on the split or the threads.
            list(_pool(min(n_threads, len(chunks))).map(lambda ab: run(*ab), chunks))
        else:
            for a, b in chunks:
                run(a, b)
    codes[~valid] = 0
    return (codes, valid) if return_valid else codes


_CHUNK = 1024  # templates per chunk (histograms 4.9 MB)


def finger_code(template: Template, model: EncodeModel | None = None) -> np.ndarray:
    """The binary code of one finger: ``uint8 (n_bytes,)``; all zeros for an unusable template.

    See :func:`finger_codes` (faster for many templates).
    """
    if not isinstance(template, Template):
        raise invalid("template", "a biomatch Template", type(template).__name__)
    return finger_codes([template], model)[0]


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances, ``int32 (len(a), len(b))``, between uint8 code arrays."""
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] % 8:
            raise invalid(name, "uint8 (n, n_bytes) with n_bytes a multiple of 8",
                          getattr(x, "dtype", type(x)))
    if a.shape[1] != b.shape[1]:
        raise invalid("b", f"{a.shape[1]} bytes per code (as a)", b.shape[1])
    return nb.hamming_matrix(np.ascontiguousarray(a).view(np.uint64), np.ascontiguousarray(b).view(np.uint64))


WEIGHT_PLANES = 3
"""Bits of each probe weight (8 levels of ``min(|z|, c) / c``): the exhaustive code pass counts
one masked popcount per plane.  Measured at 1,000,000 registry-like enrolments (the 27 mated
probes the former stage lost and 150 others, the mate's rank among all persons): 1 plane kept 14
of the 27 within the top 100, 2 planes 15, 3, 4 and 6 planes 16; the 150 others ranked the same
(one at 79 / 11 / 10 / 9 / 10, the rest first or lost under all): the ranks are set by the
~11-bit spread of impostor scores, not by the weights' last levels."""


@dataclass(frozen=True)
class ProbeWeights:
    """The probe side of asymmetric code scoring: a weight per bit instead of a bit.

    A stored code keeps only the sign of each projected dimension; the probe keeps its
    projection ``z`` (whitened: unit variance per dimension over the training fingers), so a bit
    the probe is unsure of (``|z|`` small) counts for little.  Bit ``i`` weighs the integer
    ``q_i = round(7 min(|z_i|, c) / c)`` (:data:`WEIGHT_PLANES` bits); the score of a stored
    code is ``n_bits / 2 * sum_i q_i a_i / sum_i q_i`` with ``a_i = +1`` where the stored bit
    equals the probe's sign, ``-1`` where not: in the units of ``n_bits/2 - Hamming`` (equal to
    it when every ``|z_i| >= c``), so the fusion and the cascade read it as before.  Computed as
    ``scale * (total - 2 sum_l 2^l popcount((code ^ probe) & plane_l))``, an exact integer times
    one float32 (the native pass and :meth:`scores` agree bit for bit).  Asymmetric distances of
    this kind (Gordo & Perronnin, CVPR 2011; Jégou et al., TPAMI 2011) recover part of what the
    probe's binarisation throws away; a stored code costs the same 64 bytes.

    Attributes
    ----------
    planes : uint8 (q, WEIGHT_PLANES, n_bytes)
        Bit ``l`` of every weight, packed as the codes are (``np.packbits``).
    totals : int64 (q,)
        ``sum_i q_i``.
    scales : float32 (q,)
        ``n_bits / 2 / totals`` (0 where not valid).
    valid : bool (q,)
    codes : uint8 (q, n_bytes)
        The probes' own codes (:func:`finger_codes`, bit for bit; all zeros where not valid).
    """

    planes: np.ndarray
    totals: np.ndarray
    scales: np.ndarray
    valid: np.ndarray
    codes: np.ndarray

    def scores(self, i: int, codes: np.ndarray) -> np.ndarray:
        """Scores ``float32 (m,)`` of stored ``codes`` (uint8 (m, n_bytes)) against probe ``i``."""
        if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8 or codes.ndim != 2 \
                or codes.shape[1] != self.codes.shape[1]:
            raise invalid("codes", f"uint8 (m, {self.codes.shape[1]})", getattr(codes, "shape", type(codes)))
        return plane_scores(codes, self.codes[i], self.planes[i], int(self.totals[i]), self.scales[i])


def plane_scores(codes: np.ndarray, probe: np.ndarray, planes: np.ndarray, total: int, scale) -> np.ndarray:
    """``float32 (m,)``: ``scale * (total - 2 sum_l 2^l popcount((codes ^ probe) & planes[l]))``
    (see :class:`ProbeWeights`), by the native pass the code stage uses (one key per row)."""
    from .. import _native as native  # the compiled core, loaded on first use

    probe, planes = np.asarray(probe), np.asarray(planes)
    if probe.dtype != np.uint8 or probe.ndim != 1 or probe.shape[0] % 8:
        raise invalid("probe", "uint8 (n_bytes,), n_bytes a multiple of 8", probe.shape)
    if not isinstance(codes, np.ndarray) or codes.dtype != np.uint8 or codes.ndim != 2 \
            or codes.shape[1] != probe.shape[0]:
        raise invalid("codes", f"uint8 (m, {probe.shape[0]})", getattr(codes, "shape", type(codes).__name__))
    if planes.dtype != np.uint8 or planes.ndim != 2 or planes.shape[1] != probe.shape[0] or not 1 <= len(planes) <= 16:
        raise invalid("planes", f"uint8 (L, {probe.shape[0]}) with 1 <= L <= 16", planes.shape)
    m = len(codes)
    out = np.zeros(m, np.float32)
    native.code_sums(np.ascontiguousarray(codes, np.uint8), np.arange(m, dtype=np.int32), None, 0,
                     np.ascontiguousarray(probe, np.uint8), np.ascontiguousarray(planes, np.uint8), int(total),
                     float(scale), out, np.zeros(m, np.uint8))
    return out


def probe_weights(templates: Sequence[Template], model: EncodeModel | None = None, *,
                  clip: float = 1.0) -> ProbeWeights:
    """Per-bit weights of probe fingers for asymmetric scoring (see :class:`ProbeWeights`).

    Parameters
    ----------
    templates : sequence of Template
    model : EncodeModel, optional
        Default :func:`default_model`.
    clip : float
        ``c``, in standard deviations of the whitened projection: dimensions at least this far
        from 0 count fully.  ``inf`` weighs every bit by ``|z|``; a value near 0 gives plain
        Hamming scores.

    Returns
    -------
    ProbeWeights
        Its codes' signs equal :func:`finger_codes` bit for bit.
    """
    ts = check_templates(templates, "templates")
    mdl = default_model() if model is None else model
    if not isinstance(mdl, EncodeModel):
        raise invalid("model", "an EncodeModel", type(mdl).__name__)
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:
        raise invalid("clip", "a float > 0", clip)
    n_bits = mdl.params.n_bits
    n_bytes = n_bits // 8
    if not ts:
        return ProbeWeights(np.zeros((0, WEIGHT_PLANES, n_bytes), np.uint8), np.zeros(0, np.int64),
                            np.zeros(0, np.float32), np.zeros(0, bool), np.zeros((0, n_bytes), np.uint8))
    h, valid = pair_histograms(ts, mdl.params)
    with _one_blas_thread():
        z = (h - mdl.mean) @ mdl.projection
    top = (1 << WEIGHT_PLANES) - 1
    q = np.rint(np.minimum(np.abs(z), np.float32(clip)) * np.float32(top / clip)).astype(np.int64)
    totals = q.sum(axis=1)
    ok = valid & (totals > 0)
    q[~ok], totals[~ok] = 0, 0
    planes = np.stack([np.packbits((q >> level) & 1, axis=1) for level in range(WEIGHT_PLANES)], axis=1)
    scales = np.where(ok, np.float32(n_bits / 2) / np.maximum(totals, 1).astype(np.float32), 0).astype(np.float32)
    codes = np.packbits(z > 0, axis=1)  # a stored bit is 1 iff z > 0
    codes[~ok] = 0
    return ProbeWeights(np.ascontiguousarray(planes, np.uint8), totals, scales, ok, codes)
