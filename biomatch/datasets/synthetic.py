"""Synthetic fingerprints with ground truth, in the manner of SFinGe (Cappelli, Maio, Maltoni).

A *master* fingerprint is grown from a fingerprint class: singular points give an
orientation field (zero-pole model, Sherlock & Monro 1993), a smooth random map gives
the ridge period, and a ridge pattern grows from random noise by iterated oriented
Gabor filtering, as in SFinGe; minutiae appear where the pattern must branch to follow
the field and are read from the master's own skeleton (the ground truth).

An *impression* of a master is what a sensor sees: a partial contact region, a
rotation and translation, non-linear skin distortion, pressure (ridge thickness),
blur, noise and background; the ground-truth minutiae are moved with the same
transform.

An impression can also be seen under controlled degradations (dry, wet or worn skin,
scars, strong distortion, small contact, sensor noise, another contrast curve or
resolution: :mod:`biomatch.datasets.degrade`); :func:`apply_conditions` moves the ground
truth with the image, so degraded prints still come with their true minutiae.

All lengths are pixels at 500 dpi (unless a ``resolution`` condition says otherwise).
Everything is deterministic for a given seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import invalid

__all__ = ["CLASSES", "MasterPrint", "Impression", "TemplateModel", "PopulationModel", "REGISTRY_POPULATION",
           "master", "impression", "apply_conditions", "template_impressions", "person_impressions",
           "capture_severity", "write_fvc"]

CLASSES = ("arch", "tented_arch", "left_loop", "right_loop", "whorl")

_SIZE = (400, 320)  # master canvas (h, w) at 500 dpi: about 20 x 16 mm
_N_ITER = 14
_SEED_SIGMA_PX = 6.0


@dataclass(frozen=True)
class MasterPrint:
    """A master fingerprint.

    Attributes
    ----------
    ridges : float32 (h, w)
        Ridge pattern in [-1, 1], ridges positive.
    mask : uint8 (h, w)
        Finger area.
    orientation : float32 (h, w)
        Ridge orientation, radians in [0, pi), image axes (y down).
    minutiae : float64 (n, 4)
        Ground truth ``x, y, angle, kind`` (angle in radians CCW as displayed, kind 1/2).
    fingerprint_class : str
    """

    ridges: np.ndarray
    mask: np.ndarray
    orientation: np.ndarray
    minutiae: np.ndarray
    fingerprint_class: str


@dataclass(frozen=True)
class Impression:
    """One sensor impression of a master.

    Attributes
    ----------
    image : uint8 (h, w)
        Grey image at ``dpi``, ridges dark on a light background.
    minutiae : float64 (n, 4)
        Ground truth ``x, y, angle, kind`` in the image's coordinates (only minutiae
        inside the contact region, away from its border).
    dpi : float
        Resolution of ``image``: 500 unless a ``resolution`` condition was applied.
    """

    image: np.ndarray
    minutiae: np.ndarray
    dpi: float = 500.0


def _singularities(cls: str, rng: np.random.Generator, h: int, w: int):
    """Core and delta positions (x, y) for a class, with random jitter."""
    cx, cy = w * rng.uniform(0.42, 0.58), h * rng.uniform(0.35, 0.5)
    if cls == "arch":
        return [], []
    if cls == "tented_arch":
        return [(cx, cy)], [(cx + rng.normal(0, 5), cy + rng.uniform(55, 80))]
    if cls == "left_loop":
        return [(cx, cy)], [(cx + rng.uniform(70, 110), cy + rng.uniform(70, 110))]
    if cls == "right_loop":
        return [(cx, cy)], [(cx - rng.uniform(70, 110), cy + rng.uniform(70, 110))]
    # whorl: two cores one above the other, two deltas below-left and below-right
    d = rng.uniform(12, 25)
    return ([(cx, cy - d), (cx + rng.normal(0, 4), cy + d)],
            [(cx - rng.uniform(80, 110), cy + rng.uniform(90, 120)),
             (cx + rng.uniform(80, 110), cy + rng.uniform(90, 120))])


def _orientation(cls: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cores, deltas = _singularities(cls, rng, h, w)
    if not cores:
        # Plain arch: ridges bend over a low hump.
        amp = rng.uniform(0.6, 1.0)
        cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.5, 0.65)
        # Slope of the hump at x, fading below its base (image axes: y down).
        theta = amp * np.arctan((xx - cx) / (0.25 * w)) * np.clip((cy + 0.35 * h - yy) / (0.5 * h), 0.1, 1.2)
    else:
        # Zero-pole model (Sherlock & Monro 1993): theta = (sum arg(z - delta) - sum
        # arg(z - core)) / 2 with y up; in image axes (y down) angles change sign, so the
        # roles of the two sums swap.
        z = xx + 1j * yy
        theta = np.zeros_like(xx)
        for (x0, y0) in cores:
            theta += np.angle(z - (x0 + 1j * y0))
        for (x0, y0) in deltas:
            theta -= np.angle(z - (x0 + 1j * y0))
        theta = 0.5 * theta
    # A gentle random rotation of the whole field and a low-frequency wobble.
    theta += rng.normal(0, 0.08) + 0.06 * np.sin(xx / w * rng.uniform(2, 5) + rng.uniform(0, 6)) \
        * np.cos(yy / h * rng.uniform(2, 5))
    return np.mod(theta, np.pi).astype(np.float32)


def _finger_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = w / 2 + rng.normal(0, 6), h * 0.55
    ax, ay = w * rng.uniform(0.40, 0.47), h * rng.uniform(0.52, 0.6)
    # Fingertip: elliptical top, straighter sides towards the bottom.
    ry = np.where(yy < cy, ay, ay * 1.6)
    return (((xx - cx) / ax) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8)


def master(seed: int, fingerprint_class: str | None = None) -> MasterPrint:
    """Grow a master fingerprint.

    Parameters
    ----------
    seed : int
        Random seed; the same seed gives the same master.
    fingerprint_class : str, optional
        One of :data:`CLASSES`; drawn with natural frequencies when None
        (loops ~65%, whorls ~28%, arches ~7%).

    Returns
    -------
    MasterPrint
    """
    from ..extract import _enhance_nb
    from ..extract.minutiae import detect_minutiae
    from ..extract.skeleton import skeletonise
    from ..params import ExtractionParams

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise invalid("seed", "a non-negative int", seed)
    rng = np.random.default_rng([int(seed), 0x5F1])
    if fingerprint_class is None:
        fingerprint_class = str(rng.choice(CLASSES, p=[0.04, 0.03, 0.33, 0.32, 0.28]))
    if fingerprint_class not in CLASSES:
        raise invalid("fingerprint_class", f"one of {CLASSES}", fingerprint_class)
    h, w = _SIZE
    theta = _orientation(fingerprint_class, rng, h, w)
    mask = _finger_mask(rng, h, w)
    # Ridge period 8-11 px at 500 dpi (0.4-0.55 mm), varying smoothly over the finger.
    import cv2

    per = cv2.resize(rng.uniform(8.0, 10.5, (4, 4)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    periods = np.arange(5.0, 15.01, 0.5)
    n_a = 24
    bank = _enhance_nb.gabor_bank(n_a, periods, 4.0, 4.0, 6)
    a_idx = (np.rint(theta * (n_a / np.pi)).astype(np.int32)) % n_a
    p_idx = np.clip(np.rint((per - 5.0) / 0.5), 0, len(periods) - 1).astype(np.int32)
    full = np.ones((h, w), np.uint8)
    # Smooth initial noise: fewer, larger seeds grow into fewer ridge branchings, giving
    # minutiae densities like real prints (about 0.4 per square mm, Maltoni et al.).
    img = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), _SEED_SIGMA_PX)
    for _ in range(_N_ITER):
        img = _enhance_nb.gabor_filter(img, a_idx, p_idx, full, bank)
        img = np.clip(img / (np.std(img) + 1e-6) * 1.5, -1, 1).astype(np.float32)
    # Ground truth: minutiae of the master's own skeleton, inside the finger.
    skel = skeletonise((img > 0).astype(np.uint8))
    p = ExtractionParams()
    inner = cv2.erode(mask, np.ones((9, 9), np.uint8))
    cands, valid = detect_minutiae(skel, inner, theta, p)
    m = np.stack([cands.x, cands.y, np.mod(3 * np.pi - cands.angle, 2 * np.pi), cands.kind], 1).astype(np.float64)
    m = _thin_out(m[valid], 6.0)
    return MasterPrint(img, mask, theta, m, fingerprint_class)


def _thin_out(m: np.ndarray, min_dist: float) -> np.ndarray:
    """Drop pairs of minutiae closer than ``min_dist`` px (skeleton artefacts, not ridges)."""
    if len(m) < 2:
        return m
    d = np.hypot(m[:, None, 0] - m[None, :, 0], m[:, None, 1] - m[None, :, 1])
    np.fill_diagonal(d, np.inf)
    return m[d.min(axis=1) >= min_dist]


def impression(mp: MasterPrint, seed: int, *, max_rotation_deg: float = 30.0,
               max_translation_px: float = 40.0, distortion_px: float = 9.0,
               out_size: tuple[int, int] = (400, 320)) -> Impression:
    """Render one impression of a master.

    Parameters
    ----------
    mp : MasterPrint
    seed : int
        Seed of this impression (combine the finger's and the impression's numbers).
    max_rotation_deg, max_translation_px : float
        Uniform ranges of the rigid placement.
    distortion_px : float
        Typical non-linear skin displacement at the border of the contact region.
    out_size : (int, int)
        Output image (h, w) at 500 dpi.

    Returns
    -------
    Impression
    """
    import cv2

    rng = np.random.default_rng([int(seed), 0x1A9])
    h, w = mp.ridges.shape
    oh, ow = out_size
    ang = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    tx, ty = rng.uniform(-max_translation_px, max_translation_px, 2)
    # Contact region: an ellipse around a random centre of the finger (partial contact).
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    ccx, ccy = w / 2 + rng.normal(0, 20), h * 0.5 + rng.normal(0, 25)
    rx, ry = rng.uniform(0.26, 0.42) * w * 1.2, rng.uniform(0.26, 0.42) * h * 1.1
    contact = (((xx - ccx) / rx) ** 2 + ((yy - ccy) / ry) ** 2 <= 1) & (mp.mask > 0)
    # Skin distortion: a smooth random field, near zero in the pressed centre and growing
    # towards the border of the contact (Cappelli, Maio & Maltoni 2001).
    grid = rng.normal(0, 1, (2, 5, 5)).astype(np.float32)
    dx = cv2.resize(grid[0], (w, h), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(grid[1], (w, h), interpolation=cv2.INTER_CUBIC)
    r = np.sqrt(((xx - ccx) / rx) ** 2 + ((yy - ccy) / ry) ** 2)
    weight = np.clip(r, 0, 1.5) ** 2 * distortion_px
    dx, dy = dx * weight, dy * weight
    # Forward map master -> impression: p' = R (p + D(p) - c) + c' ; c' centres the contact.
    c = np.array([ccx, ccy])
    cprime = np.array([ow / 2 + tx, oh / 2 + ty])
    cos, sin = np.cos(ang), np.sin(ang)
    rot = np.array([[cos, -sin], [sin, cos]])
    # Inverse map for rendering, first order in D: p = R^-1 (q - c') + c - D(.)
    qy, qx = np.mgrid[0:oh, 0:ow].astype(np.float64)
    u = cos * (qx - cprime[0]) + sin * (qy - cprime[1]) + c[0]
    v = -sin * (qx - cprime[0]) + cos * (qy - cprime[1]) + c[1]
    ui = np.clip(u, 0, w - 1).astype(np.float32)
    vi = np.clip(v, 0, h - 1).astype(np.float32)
    u = u - cv2.remap(dx, ui, vi, cv2.INTER_LINEAR)
    v = v - cv2.remap(dy, ui, vi, cv2.INTER_LINEAR)
    mapx, mapy = u.astype(np.float32), v.astype(np.float32)
    ridges = cv2.remap(mp.ridges, mapx, mapy, cv2.INTER_LINEAR, borderValue=-1)
    inside = cv2.remap(contact.astype(np.float32), mapx, mapy, cv2.INTER_LINEAR, borderValue=0) > 0.5
    # Pressure: dry prints have thin, broken ridges; wet ones thick, merged ridges.
    pressure = rng.uniform(-0.45, 0.45)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (oh, ow)).astype(np.float32), (0, 0), 1.2)
    # Uneven contact: low-frequency patches where the skin is drier (ridges break up) or
    # wetter (valleys fill in), as on real optical and capacitive sensors.
    patches = cv2.resize(rng.normal(0, 1, (6, 5)).astype(np.float32), (ow, oh), interpolation=cv2.INTER_CUBIC)
    local = pressure + rng.uniform(0.15, 0.5) * patches
    ink = np.clip((ridges - local + rng.uniform(0.4, 0.8) * noise) * 2.5, -1, 1)
    # Scratches and smudges: a few thin bright lines and dark blots on some impressions.
    for _ in range(rng.poisson(1.0)):
        p0 = rng.uniform(0, 1, 2) * (ow, oh)
        p1 = p0 + rng.normal(0, 60, 2)
        line = np.zeros((oh, ow), np.uint8)
        cv2.line(line, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1, int(rng.integers(1, 3)))
        ink = np.where(line > 0, -1.0, ink)
    for _ in range(rng.poisson(0.7)):
        blot = np.zeros((oh, ow), np.float32)
        cv2.circle(blot, (int(rng.uniform(0, ow)), int(rng.uniform(0, oh))), int(rng.uniform(8, 25)), 1.0, -1)
        blot = cv2.GaussianBlur(blot, (0, 0), 5)
        ink = ink * (1 - blot) + blot * rng.uniform(0.3, 1.0)
    # Contact fades at the border of the pressed region.
    soft = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 4)
    dark = (0.5 + 0.5 * ink) * soft
    bg = rng.uniform(200, 245)
    img = bg - dark * rng.uniform(140, 190)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), rng.uniform(0.6, 1.1))
    img += rng.normal(0, rng.uniform(3, 8), img.shape)
    image = np.clip(img, 0, 255).astype(np.uint8)
    # Ground truth: forward-transform the master's minutiae; keep those well inside the contact.
    m = mp.minutiae
    out = np.zeros((0, 4))
    if len(m):
        mx, my = m[:, 0].astype(int), m[:, 1].astype(int)
        keep = contact[my, mx] > 0
        pts = np.stack([m[:, 0] + dx[my, mx], m[:, 1] + dy[my, mx]], 1) - c
        q = pts @ rot.T + cprime
        # Image angle theta (CCW as displayed) turns by -ang because the y axis points down.
        a = np.mod(m[:, 2] - ang, 2 * np.pi)
        out = np.column_stack([q, a, m[:, 3]])[keep]
        ok = (out[:, 0] >= 0) & (out[:, 0] < ow) & (out[:, 1] >= 0) & (out[:, 1] < oh)
        out = out[ok]
        if len(out):
            border = cv2.distanceTransform(np.pad(inside.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
            out = out[border[out[:, 1].astype(int), out[:, 0].astype(int)] >= 12]
    return Impression(image, out)


def _condition_specs(conditions) -> list[str]:
    """Canonical ``name:param`` strings of ``conditions`` (None, one spec, or a sequence of specs)."""
    from .degrade import format_condition, parse_condition

    if conditions is None:
        return []
    if isinstance(conditions, str):
        conditions = [conditions]
    if not isinstance(conditions, (list, tuple)):
        raise invalid("conditions", "None, a 'name:param' string or a list of them", conditions)
    return [format_condition(*parse_condition(c)) for c in conditions]


def apply_conditions(imp: Impression, conditions: str | Sequence[str], seed: int) -> Impression:
    """An impression seen under degradations, its ground truth moved with it.

    Parameters
    ----------
    imp : Impression
    conditions : str or sequence of str
        ``"name:param"`` specs of :mod:`biomatch.datasets.degrade` (``"dry:0.05"``,
        ``"resolution:333"``), applied in order.
    seed : int
        Seed of this impression's degradations; each condition draws from its own stream
        derived from ``(seed, position, spec)``.

    Returns
    -------
    Impression
        At the resulting ``dpi``; geometric conditions move (distortion), drop (contact) or
        rescale (resolution) the ground-truth minutiae; photometric ones keep them.

    Raises
    ------
    InvalidInputError
        An unknown condition or a parameter out of its range.
    """
    from .degrade import apply_condition, condition_rng

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise invalid("seed", "an int", seed)
    image, minutiae, dpi = imp.image, imp.minutiae, float(imp.dpi)
    for k, spec in enumerate(_condition_specs(conditions)):
        d = apply_condition(image, dpi, spec, condition_rng("synthetic", int(seed), k, spec), minutiae)
        image, minutiae, dpi = d.image, d.minutiae, d.dpi
    return Impression(image, minutiae, dpi)


def write_fvc(out: str | Path, fingers: int, impressions: int, seed: int, progress=None,
              conditions: str | Sequence[str] | None = None) -> Path:
    """Write an FVC-layout folder of synthetic impressions with ground truth.

    Files: ``<finger>_<impression>.png`` (500 dpi, fingers numbered from 101) and
    ``<finger>_<impression>.json`` with the ground-truth minutiae
    (``{"dpi": 500, "minutiae": [[x, y, angle_rad, kind], ...]}``).

    With ``conditions`` (``"name:param"`` specs of :mod:`biomatch.datasets.degrade`, applied
    in order), every impression is degraded with its own seed and the JSON also holds
    ``"conditions"``; ``"dpi"`` is then the output resolution (changed by ``resolution``) and
    the minutiae are in the degraded image's pixels.  Without conditions the files are
    byte-identical to those written before conditions existed.

    Raises
    ------
    InvalidInputError
        ``fingers`` or ``impressions`` out of range, an unknown or out-of-range condition, or
        ``out`` is an existing file (or holds a NUL character).
    FileAccessError
        The folder or a file in it cannot be created or written (no permission, full disk).
    """
    import cv2

    from ..errors import FileAccessError, InvalidInputError

    for name, value, lo, hi in (("fingers", fingers, 1, 100000), ("impressions", impressions, 1, 100)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise invalid(name, f"an int in [{lo}, {hi}]", value)
    specs = _condition_specs(conditions)
    if not isinstance(out, (str, Path)) or "\0" in str(out):
        raise invalid("out", "a folder path (str or Path, no NUL character)", out)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"out: expected a new or existing folder, got {str(folder)!r}, which is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileAccessError(f"out: cannot create the folder {str(folder)!r}: {exc.strerror or exc}") from exc
    total = fingers * impressions
    for f in range(fingers):
        mp = master(int(seed) * 1_000_003 + f)
        for i in range(impressions):
            imp_seed = (int(seed) * 1_000_003 + f) * 131 + i
            imp = impression(mp, imp_seed)
            meta = {"dpi": 500, "class": mp.fingerprint_class}
            if specs:
                imp = apply_conditions(imp, specs, imp_seed)
                meta = {"dpi": int(imp.dpi) if float(imp.dpi).is_integer() else imp.dpi,
                        "class": mp.fingerprint_class, "conditions": specs}
            stem = f"{101 + f}_{i + 1}"
            png = folder / f"{stem}.png"
            try:
                if not cv2.imwrite(str(png), imp.image):  # OpenCV reports a failed write by returning False
                    raise OSError(f"OpenCV could not write {png.name}")
                (folder / f"{stem}.json").write_text(json.dumps(
                    {**meta,
                     "minutiae": [[round(float(x), 2), round(float(y), 2), round(float(a), 4), int(k)]
                                  for x, y, a, k in imp.minutiae]}))
            except (OSError, cv2.error) as exc:
                raise FileAccessError(f"out: cannot write {stem}.png/.json in {str(folder)!r}: "
                                      f"{getattr(exc, 'strerror', None) or exc}") from exc
            if progress is not None:
                progress(f * impressions + i + 1, total)
    return folder


@dataclass(frozen=True)
class TemplateModel:
    """Perturbation model of mated impressions for :func:`template_impressions`.

    Lengths in pixels at 500 dpi, angles in degrees.  The defaults were calibrated so
    that biomatch's genuine and impostor score distributions on generated templates
    resemble those on FVC2002 B (see ``benchmarks/synthetic_calibration.py``).
    """

    minutiae_per_finger: int = 55
    min_distance_px: float = 10.0
    width_px: int = 320
    height_px: int = 400
    max_rotation_deg: float = 25.0
    max_translation_px: float = 30.0
    distortion_px: float = 6.0
    jitter_px: float = 1.2
    angle_noise_deg: float = 5.0
    p_missing: float = 0.08
    spurious_rate: float = 0.06
    contact_min: float = 0.18
    contact_max: float = 0.50


@dataclass(frozen=True)
class PopulationModel:
    """A registry-like population for :func:`template_impressions` and :func:`person_impressions`.

    Real registries hold people whose prints are hard on every finger (worn, dry or thin skin:
    elderly people, manual workers), fingers that are hard on their own (a scar, a cut, a crease)
    and captures that are hard whatever the finger (pressed too lightly or too hard, placed off
    centre).  Each capture gets a *severity* ``s`` in [0, 1], the largest of its person's, its
    finger's and its own; each of the three is 0, or with the share below a uniform draw in
    [0, 1].  Severity 0 is the good print of ``impression`` (exactly the template
    :func:`template_impressions` draws with that model, but for ``minutiae_count_log_sd``);
    severity 1 the poor print described by the ``poor_*`` fields; parameters in between are
    interpolated linearly.  The person of a
    finger is ``finger_seed // 16`` (the convention of the project's generated galleries:
    ``finger_seed = person * 16 + position``), so the ten fingers of one person share its
    severity, in the enrolment and in every later capture.

    Lengths in pixels at 500 dpi, angles in degrees, shares in [0, 1].  The defaults
    (:data:`REGISTRY_POPULATION`) were fitted so that biomatch's per-finger genuine score
    quantiles on generated mates follow a real mixture (FVC2002 B, its degraded captures and
    SOCOFing altered-hard; ``benchmarks/population_calibration.py``), low tail included.

    Attributes
    ----------
    impression : TemplateModel
        The good print (severity 0): the default model with a larger contact (half-axes 25-60 %
        of the finger instead of 18-50 %), as FVC2002's undegraded captures are.
    poor_person_share : float
        Share of people whose ten fingers are all poor.
    poor_finger_share : float
        Share of fingers poor on their own, in any person.
    poor_capture_share : float
        Share of captures poor on their own, on any finger.
    poor_missing_share : float
        Share of the true minutiae lost on a severity-1 print (broken, faint ridges).
    poor_spurious_per_true : float
        Spurious minutiae per true minutia on a severity-1 print (creases, ridge breaks).
    poor_jitter_px, poor_angle_noise_deg : float
        Position and direction noise of the minutiae found on a severity-1 print.
    poor_distortion_px : float
        Skin distortion at the border of the contact on a severity-1 print.
    poor_contact_max : float
        Largest contact half-axis, as a fraction of the finger's width and height, on a
        severity-1 print (the smallest stays ``impression.contact_min``).
    poor_centre_offset : float
        The contact centre lies within +- this fraction of the finger's width and height of its
        centre on a severity-1 print (0.1 on a good one).
    minutiae_count_log_sd : float
        Spread of the number of minutiae between fingers: a finger's master holds
        ``impression.minutiae_per_finger * exp(minutiae_count_log_sd * z)`` of them, ``z``
        standard normal per finger (real fingers range from sparse arches to dense whorls).

    Notes
    -----
    Immutable, so thread-safe; a few dozen bytes.
    """

    impression: TemplateModel = TemplateModel(contact_min=0.25, contact_max=0.60)
    poor_person_share: float = 0.05
    poor_finger_share: float = 0.08
    poor_capture_share: float = 0.15
    poor_missing_share: float = 0.35
    poor_spurious_per_true: float = 0.30
    poor_jitter_px: float = 2.5
    poor_angle_noise_deg: float = 10.0
    poor_distortion_px: float = 9.0
    poor_contact_max: float = 0.45
    poor_centre_offset: float = 0.12
    minutiae_count_log_sd: float = 0.3

    def __post_init__(self):
        if not isinstance(self.impression, TemplateModel):
            raise invalid("impression", "a TemplateModel", self.impression)
        for name in ("poor_person_share", "poor_finger_share", "poor_capture_share", "poor_missing_share"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise invalid(name, "a float in [0, 1]", v)
        for name in ("poor_spurious_per_true", "poor_jitter_px", "poor_angle_noise_deg", "poor_distortion_px",
                     "minutiae_count_log_sd"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v < 1e3:
                raise invalid(name, "a float in [0, 1000)", v)
        if not isinstance(self.poor_contact_max, (int, float)) or not 0.05 <= self.poor_contact_max <= 1.0:
            raise invalid("poor_contact_max", "a float in [0.05, 1]", self.poor_contact_max)
        if not isinstance(self.poor_centre_offset, (int, float)) or not 0.0 <= self.poor_centre_offset <= 0.5:
            raise invalid("poor_centre_offset", "a float in [0, 0.5]", self.poor_centre_offset)


REGISTRY_POPULATION = PopulationModel()
"""The registry-like population (see :class:`PopulationModel`)."""


def _uniform(*key: int) -> float:
    """A uniform draw in [0, 1) determined by ``key`` (a hash, so draws at every level are independent
    and cost a microsecond, with no generator to build)."""
    import hashlib

    raw = b"".join(int(k).to_bytes(9, "little", signed=True) for k in key)
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8, person=b"bm-population").digest(), "little") / 2.0**64


def _level(share: float, *key: int) -> float:
    """Severity of one level: 0, or with probability ``share`` uniform in [0, 1]."""
    return _uniform(*key, 1) if _uniform(*key, 0) < share else 0.0


def capture_severity(finger_seed: int, impression: int, model: PopulationModel = REGISTRY_POPULATION) -> float:
    """Severity in [0, 1] of impression ``impression`` of finger ``finger_seed`` (see :class:`PopulationModel`).

    Returns
    -------
    float
        ``max(person, finger, capture)`` severities; the person is ``finger_seed // 16``.
    """
    f = int(finger_seed)
    return max(_level(model.poor_person_share, 0x9E0, f // 16), _level(model.poor_finger_share, 0x9E1, f),
               _level(model.poor_capture_share, 0x9E2, f, int(impression)))


def _capture_args(md: TemplateModel, pop: PopulationModel | None, finger_seed: int, i: int) -> tuple:
    """The perturbation kernel's arguments after the seed: the model's, or interpolated at the capture's severity."""
    args = [float(md.width_px), float(md.height_px), np.deg2rad(md.max_rotation_deg), md.max_translation_px,
            md.distortion_px, md.jitter_px, np.deg2rad(md.angle_noise_deg), md.p_missing, md.spurious_rate,
            md.contact_min, md.contact_max, 0.1]
    s = 0.0 if pop is None else capture_severity(finger_seed, i, pop)
    if s == 0.0:
        return tuple(args)

    def lerp(good, poor):
        return good + s * (poor - good)

    contact_max = lerp(md.contact_max, pop.poor_contact_max)
    args[4:] = [lerp(md.distortion_px, pop.poor_distortion_px), lerp(md.jitter_px, pop.poor_jitter_px),
                np.deg2rad(lerp(md.angle_noise_deg, pop.poor_angle_noise_deg)),
                lerp(md.p_missing, pop.poor_missing_share), lerp(md.spurious_rate, pop.poor_spurious_per_true),
                min(md.contact_min, contact_max), contact_max, lerp(0.1, pop.poor_centre_offset)]
    return tuple(args)


def template_impressions(finger_seed: int, impressions: int,
                         model: TemplateModel | PopulationModel | None = None) -> list:
    """Mated templates of one synthetic finger, generated without images.

    Parameters
    ----------
    finger_seed : int
        Identifies the finger: the same seed gives the same master minutiae.  With a
        :class:`PopulationModel`, ``finger_seed // 16`` is its person.
    impressions : int
        Number of impressions to draw.
    model : TemplateModel or PopulationModel, optional
        The perturbation model of every impression (default ``TemplateModel()``), or a
        population (e.g. :data:`REGISTRY_POPULATION`) whose severity per person, finger and
        capture makes some impressions poor.

    Returns
    -------
    list of Template
        At 500 dpi, quality 60 per minutia; about 10,000+ per second on one core.

    Examples
    --------
    >>> from biomatch.datasets.synthetic import REGISTRY_POPULATION, template_impressions
    >>> enrolled, probe = template_impressions(7 * 16 + 2, 2, REGISTRY_POPULATION)
    """
    from ..template import GENERATED_PARAMS_HASH, MINUTIA_DTYPE, Template
    from . import _templates_nb as nb

    if isinstance(finger_seed, bool) or not isinstance(finger_seed, (int, np.integer)) or finger_seed < 0:
        raise invalid("finger_seed", "a non-negative int", finger_seed)
    if model is not None and not isinstance(model, (TemplateModel, PopulationModel)):
        raise invalid("model", "None, a TemplateModel or a PopulationModel", model)
    pop = model if isinstance(model, PopulationModel) else None
    md = pop.impression if pop is not None else TemplateModel() if model is None else model
    n_target = md.minutiae_per_finger
    if pop is not None and pop.minutiae_count_log_sd > 0:
        from statistics import NormalDist

        z = NormalDist().inv_cdf(min(max(_uniform(0x9E3, int(finger_seed)), 1e-9), 1 - 1e-9))
        n_target = max(4, int(round(n_target * np.exp(pop.minutiae_count_log_sd * z))))
    base = nb.master_minutiae(int(finger_seed) % (2**31), n_target, float(md.width_px),
                              float(md.height_px), md.min_distance_px)
    out = []
    for i in range(int(impressions)):
        pts = nb.perturb(base, (int(finger_seed) * 7919 + i * 104729 + 1) % (2**31),
                         *_capture_args(md, pop, int(finger_seed), i))
        m = np.zeros(len(pts), MINUTIA_DTYPE)
        m["x"], m["y"] = pts[:, 0], pts[:, 1]
        m["angle"] = np.mod(pts[:, 2], 2 * np.pi).astype(np.float32) % np.float32(2 * np.pi)
        m["kind"] = pts[:, 3]
        m["quality"] = 60
        out.append(Template(m, md.width_px, md.height_px, 60 if len(m) else 0, GENERATED_PARAMS_HASH))
    return out


def person_impressions(person_seed: int, impressions: int, model: PopulationModel = REGISTRY_POPULATION,
                       positions: Sequence[int] = tuple(range(1, 11))) -> dict:
    """Mated ten-print records of one generated person.

    Parameters
    ----------
    person_seed : int
        Identifies the person; finger ``p`` is ``template_impressions(person_seed * 16 + p, ...)``.
    impressions : int
        Captures of every finger (impression 0 to enrol, 1 to search, ...).
    model : PopulationModel, optional
        Default :data:`REGISTRY_POPULATION`.
    positions : sequence of int
        ISO finger positions 1-10 (default all ten).

    Returns
    -------
    dict
        ``{position: [Template] * impressions}``.
    """
    if isinstance(person_seed, bool) or not isinstance(person_seed, (int, np.integer)) or person_seed < 0:
        raise invalid("person_seed", "a non-negative int", person_seed)
    if not isinstance(model, PopulationModel):
        raise invalid("model", "a PopulationModel", model)
    bad = [p for p in positions if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 1 <= p <= 15]
    if bad:
        raise invalid("positions", "ints in [1, 15]", bad)
    return {int(p): template_impressions(int(person_seed) * 16 + int(p), impressions, model) for p in positions}
