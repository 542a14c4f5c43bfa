"""Conditions of the skin: dry, wet (or pressed) and worn ridges, scars and creases.

Each changes what the finger's surface presents to the platen, so each runs as a skin-level
process on a grid of at least 500 dpi (:func:`~._common.on_skin`) and leaves the ground-truth
minutiae where they are (the finger still has them; recall measures what the extractor sees).
"""

from __future__ import annotations

import math

import numpy as np

from ._common import (Param, add_back_noise, area_cm2, blur, envelopes, grey_morph, mask_of_print, on_skin, px,
                      sample_in_mask, set_up, to_uint8)

DRY = Param("thinning_mm", 0.05, 0.0, 0.2, "mm", "mm of ridge width lost per side")
WET = Param("thickening_mm", 0.07, 0.0, 0.2, "mm", "mm of ridge width gained per side")
WORN = Param("height_ratio", 0.35, 0.05, 1.0, "fraction of the intact ridge height",
             "remaining ridge height (fraction)")
SCARS = Param("per_cm2", 1.5, 0.0, 20.0, "lines per cm^2", "lines per cm^2")

DRY_REFERENCE_MM = 0.05        # severity 1 of the couplings below
DRY_PATCH_MM = 0.3             # size of lost-contact patches: ridge fragments between pores
DRY_BREAK_FRACTION = 0.25      # fraction of the print out of contact at the reference severity
DRY_CONTRAST_LOSS = 0.35       # fraction of ridge contrast lost at the reference severity
WET_REFERENCE_MM = 0.07
WET_BLOBS_PER_CM2 = 0.3        # droplets at the reference severity
WET_BLOB_DIAMETER_MM = (0.8, 2.0)
WORN_SMOOTH_MM = 0.1           # rounding of ridge tops at full wear (Gaussian sigma)
WORN_SCRATCHES_PER_CM2 = 2.0   # at full wear (ratio 0)
WORN_SCRATCH_WIDTH_MM = (0.04, 0.1)
WORN_SCRATCH_LENGTH_MM = (1.0, 5.0)
SCAR_WIDTH_MM = (0.1, 0.4)
SCAR_LENGTH_MM = (2.0, 8.0)
SCAR_ANGLE_SPREAD_DEG = 25.0   # creases run across the finger (flexion), near horizontal
SCAR_DARK_FRACTION = 0.2       # raised scar tissue touches the sensor: dark; creases are light


def _lines_mask(shape, dpi: float, rng: np.random.Generator, centres: np.ndarray, width_mm, length_mm,
                angle_deg: np.ndarray, bend: float = 0.1) -> list[np.ndarray]:
    """One soft float mask per line segment (slightly bent), drawn supersampled for sub-pixel widths."""
    import cv2

    h, w = shape
    ss = 4
    out = []
    for (cx, cy), ang in zip(centres, angle_deg):
        width = px(rng.uniform(*width_mm), dpi)
        length = px(rng.uniform(*length_mm), dpi)
        a = np.deg2rad(ang)
        d = np.array([math.cos(a), -math.sin(a)])
        nrm = np.array([-d[1], d[0]])
        mid = np.array([cx, cy]) + nrm * rng.normal(0, bend * length)
        pts = np.array([[cx, cy] - d * length / 2, mid, [cx, cy] + d * length / 2])
        big = np.zeros((h * ss, w * ss), np.uint8)
        cv2.polylines(big, [np.rint(pts * ss).astype(np.int32).reshape(-1, 1, 2)], False, 255,
                      thickness=max(1, int(round(width * ss))), lineType=cv2.LINE_AA)
        m = cv2.resize(big.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)
        out.append(blur(m, 0.25 * width))
    return out




def dry(image: np.ndarray, dpi: float, thinning_mm: float = DRY.default, rng=0) -> np.ndarray:
    """Dry skin: thin, broken ridges and low contrast.

    Parameters
    ----------
    image : uint8 (h, w)
        Ridges dark on a light background.
    dpi : float
        Resolution of ``image`` (100-2000).
    thinning_mm : float
        Width lost by each ridge on each side, millimetres (0-0.2; default 0.05, which takes a
        0.25 mm ridge to 0.15 mm).
    rng : numpy Generator or int

    Returns
    -------
    uint8 (h, w)

    Notes
    -----
    A dry stratum corneum is stiff: the ridge tops touch the platen on a narrower band and in
    patches (SFinGe renders skin humidity by eroding or dilating the ridges: Cappelli, Maio &
    Maltoni, "Synthetic fingerprint-database generation", ICPR 2002).  Three effects, all scaled
    by ``s = thinning_mm / 0.05``: a grey dilation (the light valleys grow into the ridges) by a
    disc of radius ``thinning_mm``; contact lost in patches of about 0.3 mm (ridge fragments
    between pores) over ``min(0.6, 0.25 s)`` of the print; ridge contrast kept at
    ``1 - min(0.8, 0.35 s)``, with the sensor's noise added back.  The couplings are modelling
    choices, not measurements: one severity axis from a slightly dry to a very dry finger.
    """
    image, dpi, d, rng = set_up(image, dpi, thinning_mm, rng, DRY)
    s = d / DRY_REFERENCE_MM
    keep = 1.0 - min(0.8, DRY_CONTRAST_LOSS * s)

    def skin(img: np.ndarray, res: float) -> np.ndarray:
        light, _ = envelopes(img, res)
        out = grey_morph(img, px(d, res), dilate=True)
        f_break = min(0.6, DRY_BREAK_FRACTION * s)
        if f_break > 0:
            field = blur(rng.standard_normal(img.shape).astype(np.float32), px(DRY_PATCH_MM, res) / 2.5)
            field /= float(field.std()) + 1e-6
            t = float(np.quantile(field, 1.0 - f_break))
            lost = np.clip((field - t) / 0.4 + 0.5, 0.0, 1.0)
            out = out + lost * (light - out)
        return light - keep * (light - out)

    return to_uint8(add_back_noise(on_skin(image, dpi, skin), keep, rng))


def wet(image: np.ndarray, dpi: float, thickening_mm: float = WET.default, rng=0) -> np.ndarray:
    """Wet or heavily pressed skin: thick, merged ridges and saturated blobs.

    Parameters
    ----------
    image : uint8 (h, w)
    dpi : float
    thickening_mm : float
        Width gained by each ridge on each side, millimetres (0-0.2; default 0.07: a 0.25 mm
        valley closes to about 0.1 mm, and narrower valleys close entirely).
    rng : numpy Generator or int

    Returns
    -------
    uint8 (h, w)

    Notes
    -----
    Moisture (or pressure, which flattens the ridges) fills the valleys where they are narrow,
    so the contact band of every ridge widens: a grey erosion of the image (dark grows) by a disc
    of radius ``thickening_mm``.  Droplets of sweat or water on the platen frustrate total internal
    reflection over their whole area: dark, saturated blobs of 0.8-2 mm, ``0.3 s`` per cm^2 of print
    with ``s = thickening_mm / 0.07``, at the darkest level of the image.
    """
    import cv2

    image, dpi, d, rng = set_up(image, dpi, thickening_mm, rng, WET)
    s = d / WET_REFERENCE_MM

    def skin(img: np.ndarray, res: float) -> np.ndarray:
        out = grey_morph(img, px(d, res), dilate=False)
        mask = mask_of_print(img, res)
        n = int(rng.poisson(WET_BLOBS_PER_CM2 * s * area_cm2(mask, res)))
        if n:
            sat = float(np.percentile(img[mask], 0.5)) if mask.any() else 0.0
            blobs = np.zeros(img.shape, np.uint8)
            for cx, cy in sample_in_mask(mask, n, rng):
                r = px(rng.uniform(*WET_BLOB_DIAMETER_MM), res) / 2
                axes = (max(1, int(round(r))), max(1, int(round(r * rng.uniform(0.6, 1.0)))))
                cv2.ellipse(blobs, (int(round(cx)), int(round(cy))), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            soft = np.clip(blur(blobs, px(0.1, res)), 0, 1)
            out = out + soft * (sat - out)
        return out

    return to_uint8(on_skin(image, dpi, skin))


def worn(image: np.ndarray, dpi: float, height_ratio: float = WORN.default, rng=0) -> np.ndarray:
    """Worn ridges (manual work, age): reduced ridge height, rounded tops, abrasion scratches.

    Parameters
    ----------
    image : uint8 (h, w)
    dpi : float
    height_ratio : float
        Remaining ridge height as a fraction of an intact ridge's (0.05-1; default 0.35).
    rng : numpy Generator or int

    Returns
    -------
    uint8 (h, w)

    Notes
    -----
    On a contact sensor the ridge-valley contrast comes from the ridge relief: a lower relief
    lets the valley floors touch as well, so the modulation around the local mean grey level
    shrinks in proportion (to ``height_ratio``) and fine detail at the ridge edges is lost
    (Gaussian low-pass of ``0.1 mm x (1 - ratio)``).  Abrasion leaves thin light scratches,
    0.04-0.1 mm wide and 1-5 mm long, ``2 (1 - ratio)`` per cm^2.  The sensor's noise is added back.
    """
    image, dpi, k, rng = set_up(image, dpi, height_ratio, rng, WORN)

    def skin(img: np.ndarray, res: float) -> np.ndarray:
        light, _ = envelopes(img, res)
        mean = blur(img, px(0.5, res))
        smooth = blur(img, px(WORN_SMOOTH_MM * (1.0 - k), res))
        mask = mask_of_print(img, res)
        # Only skin wears: outside the print the sensor's background stays as it was.
        on_skin = np.clip(blur(mask.astype(np.float32), px(0.2, res)), 0.0, 1.0)
        out = img + on_skin * (mean + k * (smooth - mean) - img)
        n = int(rng.poisson(WORN_SCRATCHES_PER_CM2 * (1.0 - k) * area_cm2(mask, res)))
        if n:
            centres = sample_in_mask(mask, n, rng)
            for m in _lines_mask(img.shape, res, rng, centres, WORN_SCRATCH_WIDTH_MM, WORN_SCRATCH_LENGTH_MM,
                                 rng.uniform(0, 180, n), bend=0.02):
                out = out + m * (light - out)
        return out

    return to_uint8(add_back_noise(on_skin(image, dpi, skin), k, rng))


def scars(image: np.ndarray, dpi: float, per_cm2: float = SCARS.default, rng=0) -> np.ndarray:
    """Scars and creases: light and dark lines across the ridges.

    Parameters
    ----------
    image : uint8 (h, w)
    dpi : float
    per_cm2 : float
        Mean number of lines per cm^2 of print (0-20; default 1.5, about 4 on a 2.5 cm^2 FVC print).
    rng : numpy Generator or int

    Returns
    -------
    uint8 (h, w)

    Notes
    -----
    Creases (flexion lines, more numerous with age) and healed cuts are depressions of the skin
    that do not touch the sensor: light lines 0.1-0.4 mm wide and 2-8 mm long, mostly across the
    finger (within 25 degrees of horizontal), slightly bent.  One in five is raised scar tissue,
    which touches uniformly: a dark line.  Their number is Poisson with mean ``per_cm2`` times the
    print's area.
    """
    image, dpi, rho, rng = set_up(image, dpi, per_cm2, rng, SCARS)

    def skin(img: np.ndarray, res: float) -> np.ndarray:
        light, dark = envelopes(img, res)
        mask = mask_of_print(img, res)
        n = int(rng.poisson(rho * area_cm2(mask, res)))
        out = img.copy()
        if n:
            centres = sample_in_mask(mask, n, rng)
            angles = rng.normal(0.0, SCAR_ANGLE_SPREAD_DEG, n)
            dark_line = rng.uniform(0, 1, n) < SCAR_DARK_FRACTION
            for m, is_dark in zip(_lines_mask(img.shape, res, rng, centres, SCAR_WIDTH_MM, SCAR_LENGTH_MM, angles),
                                  dark_line):
                out = out + m * ((dark if is_dark else light) - out)
        return out

    return to_uint8(on_skin(image, dpi, skin))
