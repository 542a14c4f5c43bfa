"""Every tunable of biomatch, in one frozen parameter object per stage.

Names carry their units (``_px`` at the 500 dpi working resolution, ``_deg``,
``_dpi``).  Each object round-trips through JSON and has a short stable hash;
templates store the hash of the extraction parameters and the matcher refuses to
compare templates of incompatible generations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import invalid

__all__ = ["ExtractionParams", "MatchParams", "params_hash", "to_json", "from_json"]

WORKING_DPI = 500
"""Resolution at which all images are processed and template coordinates are kept."""

T = TypeVar("T")


@dataclass(frozen=True)
class ExtractionParams:
    """Parameters of the minutiae extractor (all lengths at 500 dpi).

    Defaults follow the published classic pipeline (Hong, Wan & Jain 1998;
    Maltoni et al., *Handbook of Fingerprint Recognition*, 3rd ed.), expressed in
    physical units so that they hold for any sensor once the image is at 500 dpi.
    """

    # Segmentation: blocks whose grey-level spread is too small are background.
    block_size_px: int = 16
    segment_std_min: float = 0.1  # fraction of the image's global std (normalised)
    segment_coherence_weight: float = 0.5
    segment_erode_px: int = 8
    # Orientation field.
    gradient_sigma_px: float = 1.0
    orientation_sigma_px: float = 7.0
    # Ridge frequency: ridge periods at 500 dpi lie in 5..15 px (about 0.25-0.75 mm).
    ridge_period_min_px: float = 5.0
    ridge_period_max_px: float = 15.0
    ridge_period_default_px: float = 9.0
    frequency_smooth_blocks: int = 2
    # Contextual Gabor enhancement.
    gabor_sigma_along_px: float = 4.0
    gabor_sigma_across_px: float = 4.0
    gabor_radius_px: int = 6
    gabor_angle_steps: int = 16
    # Minutiae filtering.
    border_margin_px: float = 10.0
    spur_length_px: float = 10.0
    short_ridge_length_px: float = 12.0
    cluster_distance_px: float = 8.0
    hole_perimeter_px: float = 30.0
    max_minutiae: int = 80
    # Images larger than this (at 500 dpi) are refused: a finger is < 40 mm.
    max_image_side_px: int = 2000
    min_image_side_px: int = 32


@dataclass(frozen=True)
class MatchParams:
    """Parameters of the Minutia Cylinder-Code matcher (Cappelli et al., TPAMI 2010).

    Distances in pixels at 500 dpi, angles in degrees.
    """

    radius_px: float = 70.0
    spatial_cells: int = 16
    angular_cells: int = 6
    sigma_spatial_px: float = 28.0 / 3.0
    sigma_angular_deg: float = 2.0 * 180.0 / 9.0 / 2.0 * 0.9  # ~ pi/9 rad in the paper
    mu_psi: float = 0.01  # sigmoid centre of cell contributions
    tau_psi: float = 400.0
    min_valid_cells_fraction: float = 0.75
    min_neighbours: int = 2
    max_angle_diff_deg: float = 90.0
    n_relax_pairs_min: int = 4
    n_relax_pairs_max: int = 12
    relax_iterations: int = 5
    relax_weight: float = 0.5


def to_json(params: Any) -> str:
    """Serialise a parameter object to canonical JSON (sorted keys)."""
    if not dataclasses.is_dataclass(params) or isinstance(params, type):
        raise invalid("params", "a biomatch parameter dataclass instance", params)
    payload = {"type": type(params).__name__, "values": dataclasses.asdict(params)}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def from_json(text: str, cls: type[T]) -> T:
    """Parse JSON written by :func:`to_json` into ``cls``; unknown keys are refused."""
    try:
        payload = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise invalid("text", "JSON written by biomatch.params.to_json", text) from exc
    if not isinstance(payload, dict) or payload.get("type") != cls.__name__:
        raise invalid("text", f"JSON of a {cls.__name__}", text)
    values = payload.get("values", {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(values) - known
    if unknown:
        raise invalid("text", f"only fields of {cls.__name__}", sorted(unknown))
    return cls(**values)


def params_hash(params: Any) -> str:
    """Return a 16-hex-digit hash identifying a parameter generation."""
    return hashlib.sha256(to_json(params).encode()).hexdigest()[:16]
