"""The parameters of the fingerprint stages, and the JSON round trip and hash every parameter object uses.

Every tunable of biomatch lives in one frozen parameter object per stage.  The fingerprint stages'
are here: :class:`ExtractionParams` (extraction), :class:`QualityParams` (the 0-100 print quality
score) and :class:`MatchParams` (the matcher; the C++ core's table ``native/mcc_params.def`` is
checked against it).  The later stages keep theirs beside their code, in their own layer:
``extract.resolution.ResolutionParams`` (the stated-dpi check), ``retrieval.codes.EncodeParams``
and ``retrieval.faiss_retrieval.FaissRetrievalParams`` (finger codes, candidate retrieval),
``decide.params.DecisionParams`` (fusion and the verdict) and ``face.params.FaceParams``.

Names carry their units (``_px`` at the 500 dpi working resolution, ``_deg``,
``_dpi``).  Each object round-trips through JSON (:func:`to_json`, :func:`from_json`) and has a
short stable hash (:func:`params_hash`); templates store the hash of the extraction parameters and
the matcher refuses to compare templates of incompatible generations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import invalid

__all__ = ["ExtractionParams", "MatchParams", "QualityParams", "params_hash", "to_json", "from_json"]

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

    # Segmentation (biomatch.extract.segmentation.segment).  Ridges: the ridge-band energy is at
    # least this ratio (amplitude) of what the sensor's noise alone gives -- averaged over the
    # window (~50 independent samples) the noise's own energy stays within about +-30% of its
    # mean, so 2x is clear of it -- and at least this many grey levels RMS.
    block_size_px: int = 16
    segment_snr_min: float = 2.0
    segment_min_band_grey: float = 1.0
    # Both tests also ask for this fraction of the print's strongest (95th percentile) ridge
    # energy or grey-level spread: far fainter ridge areas are latent residue of earlier
    # fingers on the platen or another phalanx, not this impression.  0.3 is the fraction the
    # former contrast-only segmentation used.
    segment_relative_min: float = 0.3
    segment_min_contrast_grey: float = 6.0  # local grey-level std below this is never print
    # Light scratches and creases (biomatch.extract.scratches): pixels more than this many local
    # standard deviations below the normalised mean (a unit-variance ridge wave's valleys are at
    # -1.41), joined into a line at least 20 px (1 mm) long and at most 0.35 as wide, farther than
    # 8 px inside the mask, count as no evidence (0 disables).  benchmarks/robustness.py, FVC2002
    # DB1-4_B: worn:0.35 8.16% -> 5.62% EER (FMR1000 14.2% -> 10.7%), every other condition and
    # the undegraded sets unchanged (no undegraded template's minutiae change).
    scratch_depth_sigma: float = 3.0
    scratch_min_length_px: float = 20.0
    scratch_max_width_ratio: float = 0.35
    scratch_border_px: float = 8.0
    # Orientation field.
    gradient_sigma_px: float = 1.0
    orientation_sigma_px: float = 10.0  # about one ridge period: smooths noise, keeps cores
    # The ridge-period stage reads, where the fine field's coherence is below
    # period_coarse_below_coherence and a field over period_orientation_sigma_px (twice the window:
    # the coarse level of a hierarchical estimate) is more coherent, that coarse field: broken,
    # merged or noisy ridges turn the fine field and the period window off the ridge normal, and the
    # block left the mask (biomatch.extract.orientation.period_orientation; 0 disables).  0.3: the
    # fine field of clear ridges lies well above it, isotropic noise's 0.07-0.08 well below.
    # benchmarks/robustness.py, FVC2002 DB1-4_B: undegraded mean EER 0.56 -> 0.46%, pooled over the
    # four sets EER 0.98 -> 0.69%, FNMR at the pooled FMR 0.1% 2.23 -> 2.05%; degraded mean 3.37 ->
    # 3.27% (wet 7.22 -> 6.78, worn 3.21 -> 2.81; contact 13.84 -> 13.92, distortion 2.69 -> 2.94).
    period_orientation_sigma_px: float = 20.0
    period_coarse_below_coherence: float = 0.3
    # Ridge frequency: ridge periods at 500 dpi lie in 5..15 px (about 0.25-0.75 mm).
    ridge_period_min_px: float = 5.0
    ridge_period_max_px: float = 15.0
    ridge_period_default_px: float = 9.0
    # A block is periodic when the normalised autocorrelation of its x-signature (Hong et al.)
    # peaks above ridge_peak_min; a peak above ridge_weak_peak_min counts too where the block's
    # ridge-flow coherence is at least ridge_weak_coherence_min, about twice isotropic noise's
    # 0.07-0.08 (biomatch.extract.frequency.ridge_period says why).  Weakly periodic blocks keep
    # the print's mask, not its period map.  Equal bars: none.  The resolution check and the
    # quality score's ridge fraction count the strict blocks alone.
    ridge_peak_min: float = 0.25
    ridge_weak_peak_min: float = 0.20
    ridge_weak_coherence_min: float = 0.15
    frequency_smooth_blocks: int = 2
    # Foreground blocks whose 3x3 neighbourhood shows a periodic ridge pattern in fewer
    # than this fraction of blocks are noise, not print (0 = keep all).
    min_ridge_fraction_local: float = 0.34
    # A print whose ridge area (after that cut) is under small_print_area_mm2 -- less than half
    # the 12.8 x 16.5 mm window of a single-finger FAP 10 sensor -- keeps the blocks bordering its
    # ridge area too, wherever they lie small_print_edge_inset_px inside the foreground: on a light
    # touch, a dry patchy print or a fingertip crop those blocks (its sharp edge, its core and
    # deltas) are a large share of its evidence, while on a full print they add mostly a fading
    # edge's false endings (biomatch.extract.segmentation.widen_small_print; 0 disables).
    # benchmarks/robustness.py, FVC2002 DB1-4_B: contact:64 16.52 -> 13.84% EER, worn 4.63 ->
    # 3.21, wet 8.12 -> 7.22, dry 9.38 -> 8.94, the undegraded sets unchanged.  The inset: 12 px
    # (0.6 mm) is the foreground windows' 10 px reach plus 2; at 10 px three DB3_B genuine pairs
    # fall under the FMR 0.1% threshold (clear prints of under 100 mm^2 whose ridges fade out).
    small_print_area_mm2: float = 100.0
    small_print_edge_inset_px: float = 12.0
    # Contextual Gabor enhancement.
    gabor_sigma_along_px: float = 4.0
    gabor_sigma_across_px: float = 4.0
    gabor_radius_px: int = 6
    gabor_angle_steps: int = 16
    # Minutiae filtering.
    border_margin_px: float = 10.0
    spur_length_px: float = 8.0  # a spur is shorter than one ridge period
    short_ridge_length_px: float = 12.0
    cluster_distance_px: float = 8.0
    hole_perimeter_px: float = 10.0  # bridges/holes: two forks joined within half a period
    max_minutiae: int = 80
    # ... per this much print area: a larger print keeps up to max_minutiae * area / this, so a
    # rolled print (nail to nail, 400-800 mm^2) keeps a plain print's minutiae density instead of
    # losing a third to half of its minutiae, most of them where a plain print of the finger has
    # its own (issue 18; benchmarks/rolled_plain.py).  0: a fixed cap of max_minutiae.
    max_minutiae_area_mm2: float = 300.0
    # A ridge ending is located at the valley skeleton's fork ahead of its tip (ISO/IEC
    # 19794-2), searched up to about one ridge period away (0 = keep the tip).
    ending_valley_fork_max_px: float = 9.0
    min_minutia_quality: int = 20  # drop minutiae where ridge flow is nearly isotropic
    # A "print" whose mean ridge-flow coherence is below this is noise: isotropic noise gives
    # 0.07-0.08 with the default gradient and orientation windows (about 200 independent
    # gradients per window), prints 0.15 and up even when dry, wet or worn (FVC2002 B under
    # benchmarks/robustness.py's conditions).
    min_print_coherence: float = 0.11
    # Images larger than this (at 500 dpi) are refused: a finger is < 40 mm.
    max_image_side_px: int = 2000
    min_image_side_px: int = 32

    def __post_init__(self):
        # A parameter out of its range does not fail loudly inside a kernel: a NaN threshold or a
        # negative length silently disables a stage or empties every template.  So every field is
        # checked here, with the argument, the expected and the actual value named.
        def number(name: str, expected: str, ok) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
                raise invalid(name, expected, v)

        def integer(name: str, lo: int, hi: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise invalid(name, f"an int in [{lo}, {hi}]", v)

        for name in ("gradient_sigma_px", "orientation_sigma_px", "period_orientation_sigma_px", "ridge_period_min_px",
                     "gabor_sigma_along_px", "gabor_sigma_across_px", "scratch_min_length_px"):
            number(name, "a finite number > 0", lambda v: v > 0)
        for name in ("segment_snr_min", "segment_min_band_grey", "segment_min_contrast_grey", "scratch_depth_sigma",
                     "scratch_border_px", "border_margin_px", "spur_length_px", "short_ridge_length_px",
                     "cluster_distance_px", "hole_perimeter_px", "max_minutiae_area_mm2",
                     "ending_valley_fork_max_px", "small_print_area_mm2", "small_print_edge_inset_px"):
            number(name, "a finite number >= 0", lambda v: v >= 0)
        for name in ("segment_relative_min", "min_ridge_fraction_local", "min_print_coherence", "ridge_peak_min",
                     "ridge_weak_coherence_min", "period_coarse_below_coherence"):
            number(name, "a number in [0, 1]", lambda v: 0 <= v <= 1)
        number("scratch_max_width_ratio", "a number in (0, 1]", lambda v: 0 < v <= 1)
        number("ridge_period_max_px", f"a finite number > ridge_period_min_px ({self.ridge_period_min_px})",
               lambda v: v > self.ridge_period_min_px)
        number("ridge_period_default_px",
               f"a number in [ridge_period_min_px, ridge_period_max_px] "
               f"([{self.ridge_period_min_px}, {self.ridge_period_max_px}])",
               lambda v: self.ridge_period_min_px <= v <= self.ridge_period_max_px)
        number("ridge_weak_peak_min", f"a number in [0, ridge_peak_min ({self.ridge_peak_min})]",
               lambda v: 0 <= v <= self.ridge_peak_min)
        integer("block_size_px", 4, 64)
        integer("frequency_smooth_blocks", 0, 16)
        integer("gabor_radius_px", 1, 32)
        integer("gabor_angle_steps", 2, 180)
        integer("max_minutiae", 1, 255)  # the interchange formats count minutiae in one byte
        integer("min_minutia_quality", 0, 100)
        integer("min_image_side_px", 8, 100_000)
        integer("max_image_side_px", self.min_image_side_px, 100_000)


@dataclass(frozen=True)
class MatchParams:
    """Parameters of the Minutia Cylinder-Code matcher (Cappelli, Ferrara & Maltoni, TPAMI 2010).

    Lengths in pixels at 500 dpi, angles in degrees; the paper's symbol is given
    after each field.  Defaults are the published ones (MCC16b with LSS-R).
    """

    # Cylinders (Section 3).
    radius_px: float = 70.0  # R
    spatial_cells: int = 16  # N_S
    angular_cells: int = 6  # N_D
    sigma_spatial_px: float = 28.0 / 3.0  # sigma_S
    sigma_angular_deg: float = 40.0  # sigma_D = 2*pi/9
    cell_threshold: float = 0.01  # mu_Psi: a cell bit is 1 when its contribution sum exceeds this
    hull_margin_px: float = 50.0  # Omega: enlargement of the minutiae convex hull for valid cells
    min_valid_cells_fraction: float = 0.75  # min_VC
    min_neighbours: int = 2  # min_M
    # Local similarity (Section 4.1).
    min_matchable_cells_fraction: float = 0.6  # min_ME
    max_angle_diff_deg: float = 90.0  # delta_theta
    # Consolidation, LSS-R (Section 4.2-4.3).
    pairs_min: int = 4  # min n_P
    pairs_max: int = 12  # max n_P
    pairs_mu: float = 20.0  # mu_P
    pairs_tau: float = 0.4  # tau_P
    relax_iterations: int = 5  # n_rel
    relax_weight: float = 0.5  # w_R
    relax_distance_mu_px: float = 5.0  # mu_1^rho
    relax_distance_tau_per_px: float = -1.6  # tau_1^rho
    relax_angle_mu_deg: float = 15.0  # mu_2^rho = mu_3^rho = pi/12
    relax_angle_tau_per_rad: float = -30.0  # tau_2^rho = tau_3^rho
    min_minutiae: int = 4  # a template with fewer minutiae scores 0
    # Minutia reliability in LSS-R (biomatch's addition; 0: the paper's score).  Each of the n_R
    # relaxation pairs has r_t = 1 - w + w sqrt(q_a q_b), q = minutia quality / 100, normalised to
    # mean 1 over the n_R pairs (relative to the comparison's own mean: marking uniformly poor
    # prints down only adds print-to-print variance, and measured so, 0.74% -> 1.86% mean EER
    # undegraded at w = 1); the score is sum r_t lambda_t / n_P over the n_P pairs of highest
    # r_t x efficiency.  The top pairs the later stages use (elastic anchors, fits) stay the
    # paper's.  FVC2002 DB1-4_B: see elastic_reliability_weight.
    lssr_reliability_weight: float = 1.0
    # Global rigid consistency (biomatch's addition).  score = lssr^(1-w) * global^w.
    # Default w = 0: on FVC2002 DB1-4_B with mindtct minutiae it lowered FMR1000 on DB1/DB2
    # but raised the EER on DB3 (distorted prints); the term is still reported by explain().
    global_max_distance_px: float = 15.0
    global_max_angle_deg: float = 30.0
    global_weight: float = 0.0
    # Elastic consistency (biomatch's addition, the second stage of elastic matchers): each of
    # the first ``elastic_anchors`` LSS-R top pairs anchors an alignment (its two minutiae
    # superposed, rotation = their direction difference); minutiae pairs agree within
    # ``elastic_distance_px`` + ``elastic_distance_fraction`` x their distance from the anchor
    # (skin distortion grows away from the aligned region) and ``elastic_angle_deg``; greedy
    # one-to-one.  elastic = n_e^2 / (overlap_A * overlap_B), score = lssr^(1-w) * elastic^w.
    # 8 px is about one ridge period at 500 dpi.  An anchor that a tried anchor's alignment maps
    # within ``elastic_cluster_px`` and ``elastic_cluster_deg`` of its partner is skipped (same
    # alignment; 0 px: never).  Pairs with lssr < ``elastic_gate`` skip the stage and score lssr
    # (see biomatch.match: decisions at any threshold >= the gate can only lose genuine pairs
    # with lssr < gate, none of FVC2002's; about half the impostors skip it).  0.0158 is the
    # impostor median of the reliability-weighted LSS-R (0.0145 before it, which would let 78%
    # of the pairs through the stage instead of 52%: 16% slower).
    # FVC2002 DB1-4_B, biomatch's extractor, all-impostor: mean EER 1.87% (stage off) -> 1.34%,
    # FMR1000 4.1% -> 2.6%.
    elastic_anchors: int = 12
    elastic_distance_px: float = 8.0
    elastic_distance_fraction: float = 0.05
    elastic_angle_deg: float = 20.0
    elastic_weight: float = 0.5
    elastic_gate: float = 0.0158
    elastic_cluster_px: float = 10.0
    elastic_cluster_deg: float = 15.0
    # Minutia reliability in the elastic term (biomatch's addition; 0: every minutia counts 1): a
    # minutia of the overlap that the best anchor left unpaired counts 1 - w + w q (q = quality
    # / 100; paired ones count 1) in overlap_A, overlap_B -- a missing partner of a minutia on
    # blurred or border ridges is weaker evidence against the pair -- and the pairs_max floor is
    # taken at the overlap's mean count.  With lssr_reliability_weight = 1 (and the elastic gate
    # at the new LSS-R's impostor median), FVC2002 DB1-4_B, biomatch's extractor, all-impostor
    # (benchmarks/robustness.py, EER / FMR1000 %): undegraded 0.74 / 1.34 -> 0.53 / 1.07 (no set
    # worse), mean of the 13 degraded conditions 4.68 / 9.99 -> 4.42 / 9.13; dry 12.05 -> 10.91,
    # wet 10.10 -> 9.73, worn 8.49 -> 8.16, but small contact 17.17 -> 17.58 (EER).  Either weight
    # alone (gate 0.0145): undegraded 0.68 (lssr; DB1_B one genuine pair worse) or 0.62
    # (elastic), degraded 4.48 or 4.57.  Measured worse: the LSS-R pairs weighted by the absolute
    # sqrt(q_a q_b) (undegraded 1.86, degraded 7.18), paired minutiae weighted too in the elastic
    # term (undegraded 0.73, DB1_B worse), a quality floor of 30-60 for the elastic anchors.
    elastic_reliability_weight: float = 1.0
    # Orientation-field agreement (biomatch's addition, evidence beside the minutiae): for pairs
    # that went through the elastic stage, when both templates carry a block orientation field
    # (Template.orientation_grid), a rigid transform fitted by least squares on the best anchor's
    # elastic pairs (the global transform when they are fewer than 3) maps the candidate's blocks
    # onto the probe's, and score *= 1 - w + w * R, R the robust agreement of the overlapping
    # print blocks (below).  Templates without a field score as before.
    # FVC2002 DB1-4_B degraded (contact, wet, worn), leave-one-database-out: FMR1000 2-3 points
    # lower at w = 1, the clean sets unchanged within noise.
    orientation_weight: float = 1.0
    # R: each overlapping block earns a credit, 1 at 0 degrees of orientation difference, falling
    # linearly in cos 2(difference) to 0 at orientation_zero_credit_deg; blocks beyond
    # orientation_conflict_deg (>= the former: they earn nothing) are in conflict, and the
    # largest 8-connected region of them, when it holds at most
    # orientation_conflict_max_fraction of the n overlapping blocks, counts at
    # orientation_conflict_weight (lambda): with m blocks in it and C the credit of the others,
    # R = C / (n - m) * (1 - lambda m / n); else R = C / n.  Why: the mean A2 = mean cos 2(diff)
    # (the factor until 2026-12-07, still reported by explain()) read one compact region of
    # disagreement -- a scar, a crease, a patch of skin turned or cut -- as disagreement of the
    # whole print: SOCOFing's altered fingers (central rotation) were pushed under impostors
    # whose fields agree mediocrely everywhere.  Measured on the same pairs (scores of one
    # extraction; EER / FMR1000 %, FVC2002 DB1-4_B all-impostor; SOCOFing subjects 1-100,
    # altered-hard mates, FNMR at FMR 0.1% against 44,850 real impostors): the mean A2 gave
    # undegraded 0.54 / 1.16, contact + wet + worn + dry mean EER 9.94, SOCOFing central
    # rotation 21.9% (9.1% without the factor); R gives 0.55 / 1.25, 9.83, 10.8%.  A trimmed
    # mean (dropping the lowest 10-50% of blocks) or blocks near the paired minutiae only lost
    # on FVC what they gained on SOCOFing.  The angles: 45 degrees is halfway (no evidence
    # either way), 30 the spread of a mate's field (FVC2002 DB1_B mates: >= 97.9% of the
    # overlapping blocks within 30 degrees in 95% of the pairs); 0.3-0.7 for the credit's cos
    # bar, 0.4-0.6 for the fraction and 4- or 8-connectivity changed these figures by <= 0.1.
    # orientation_zero_credit_deg = 0: R = max(A2, 0), the factor before (the others unused).
    orientation_zero_credit_deg: float = 30.0
    orientation_conflict_deg: float = 45.0
    orientation_conflict_weight: float = 0.5
    orientation_conflict_max_fraction: float = 0.5
    # Where that factor applies (both fields, through the elastic stage, w > 0), the fused score
    # is then mapped through the monotone piecewise-linear curve through the points
    # (orientation_scale_from[k], orientation_scale_to[k]) -- beyond the last point the last
    # segment's slope, result clamped to [0, 1] -- so that every comparison, with or without the
    # fields, is read on one (minutiae-only) scale against biomatch.match.SCORE_AT_FMR.  The
    # points send the fused scores' thresholds at FMR 1%, 0.1%, 0.01% (0.0650, 0.0869, 0.0966:
    # FVC2002 DB1-4_B undegraded, 11,520 impostors pooled, minutia reliability on, the robust
    # agreement R; 0.0685, 0.0928, 0.1037 with the mean A2; without reliability 0.0556, 0.0793,
    # 0.0868) onto the minutiae-only ones, and 1 onto 1 (without that
    # point the last threshold segment's slope would send every fused score above ~0.4 to 1 and
    # erase the ordering of strong candidates).
    # Same length >= 2, both strictly increasing.
    orientation_scale_from: tuple[float, ...] = (0.0, 0.0650, 0.0869, 0.0966, 1.0)
    orientation_scale_to: tuple[float, ...] = (0.0, 0.0692, 0.0915, 0.1105, 1.0)
    # Where minutia reliability applies (lssr_/elastic_reliability_weight > 0 and both templates
    # report minutia qualities, i.e. not all the same) and the orientation factor does not (a template
    # without a field, e.g. one read from ISO 19794-2), the score is mapped onto the same scale
    # through the curve through (reliability_scale_from[k], reliability_scale_to[k]), same rules:
    # the points send those scores' thresholds at FMR 1%, 0.1%, 0.01% (0.0841, 0.1062, 0.1224,
    # measured as the orientation curve's, the fields set aside) onto the table's.  Templates
    # without minutia qualities (all 0, "not reported" in the interchange formats, or one value
    # for all, e.g. Template.from_arrays' 100) score as before, unmapped.
    reliability_scale_from: tuple[float, ...] = (0.0, 0.0841, 0.1062, 0.1224, 1.0)
    reliability_scale_to: tuple[float, ...] = (0.0, 0.0692, 0.0915, 0.1105, 1.0)

    def __post_init__(self):
        positive = ("radius_px", "sigma_spatial_px", "sigma_angular_deg", "cell_threshold",
                    "global_max_distance_px", "global_max_angle_deg", "elastic_distance_px", "elastic_angle_deg")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v > 0:
                raise invalid(name, "a number > 0", v)
        for name, lo, hi in (("spatial_cells", 2, 64), ("angular_cells", 1, 32), ("pairs_min", 1, 1000),
                             ("pairs_max", 1, 1000), ("relax_iterations", 0, 100), ("min_neighbours", 0, 1000),
                             ("min_minutiae", 0, 1000), ("elastic_anchors", 0, 1000)):
            v = getattr(self, name)
            if not isinstance(v, (int,)) or isinstance(v, bool) or not lo <= v <= hi:
                raise invalid(name, f"an int in [{lo}, {hi}]", v)
        if self.pairs_max < self.pairs_min:
            raise invalid("pairs_max", f">= pairs_min ({self.pairs_min})", self.pairs_max)
        for name in ("min_valid_cells_fraction", "min_matchable_cells_fraction", "relax_weight", "global_weight",
                     "elastic_weight", "elastic_distance_fraction", "elastic_gate", "orientation_weight",
                     "lssr_reliability_weight", "elastic_reliability_weight"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise invalid(name, "a number in [0, 1]", v)
        if not isinstance(self.elastic_cluster_px, (int, float)) or not self.elastic_cluster_px >= 0:
            raise invalid("elastic_cluster_px", "a number >= 0", self.elastic_cluster_px)
        if not isinstance(self.elastic_cluster_deg, (int, float)) or not 0 < self.elastic_cluster_deg <= 180:
            raise invalid("elastic_cluster_deg", "a number in (0, 180]", self.elastic_cluster_deg)
        if not 0 < self.max_angle_diff_deg <= 180:
            raise invalid("max_angle_diff_deg", "a number in (0, 180]", self.max_angle_diff_deg)
        v = self.orientation_zero_credit_deg
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 90:
            raise invalid("orientation_zero_credit_deg", "a number of degrees in [0, 90] (0: the mean agreement)", v)
        v = self.orientation_conflict_deg
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= 90:
            raise invalid("orientation_conflict_deg", "a number of degrees in (0, 90]", v)
        if self.orientation_conflict_deg < self.orientation_zero_credit_deg:
            raise invalid("orientation_conflict_deg",
                          f">= orientation_zero_credit_deg ({self.orientation_zero_credit_deg})",
                          self.orientation_conflict_deg)
        v = self.orientation_conflict_weight
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 1:
            raise invalid("orientation_conflict_weight", "a number in [0, 1]", v)
        v = self.orientation_conflict_max_fraction
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < 1:
            raise invalid("orientation_conflict_max_fraction", "a number in [0, 1)", v)
        for name in ("orientation_scale_from", "orientation_scale_to", "reliability_scale_from",
                     "reliability_scale_to"):
            v = getattr(self, name)
            ok = (isinstance(v, (tuple, list)) and len(v) >= 2
                  and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
                  and all(b > a for a, b in zip(v, v[1:])))
            if not ok:
                raise invalid(name, "a tuple of >= 2 strictly increasing finite numbers", v)
            object.__setattr__(self, name, tuple(float(x) for x in v))
        for prefix in ("orientation_scale", "reliability_scale"):
            src, dst = getattr(self, prefix + "_from"), getattr(self, prefix + "_to")
            if len(src) != len(dst):
                raise invalid(prefix + "_to", f"{len(src)} points (as many as {prefix}_from)", dst)


@dataclass(frozen=True)
class QualityParams:
    """Parameters of the whole-image quality score (:mod:`biomatch.extract.quality_score`).

    The model: ``z = bias + weight_log_area * ln(area_mm2 / 100) + weight_coherence * coherence
    + weight_clarity * clarity + weight_ridge_fraction * ridge_fraction + weight_minutiae *
    min(n_minutiae, minutiae_cap)``; ``score = score_db_per_decade * log10(1 + e^z)``, clipped to
    0..100.  ``sigmoid(z)`` estimates the probability that the print does not cause a false
    non-match at FMR = 0.1%.  Weights are non-negative (the score never falls when a feature
    improves) and were fitted on generated prints with known degradations, not on the public
    sets that validate the score: ``benchmarks/quality_evr.py fit`` reproduces them.  Kept apart
    from :class:`ExtractionParams` so that templates keep their parameter hash (the quality does
    not change minutiae or scores).
    """

    block_size_px: int = 32  # NFIQ 2's local-feature block at 500 ppi
    min_area_mm2: float = 8.0  # below about 2.8 x 2.8 mm there is no usable print: score 0
    # Fitted by ``benchmarks/quality_evr.py fit`` (800 generated impressions, seed 7).
    bias: float = -17.17
    weight_log_area: float = 5.24  # per unit of ln(area / 100 mm^2)
    weight_coherence: float = 2.97
    weight_clarity: float = 2.04
    weight_ridge_fraction: float = 17.6
    # The minutiae count is not monotone in quality (poor prints give spurious minutiae), so
    # a non-negative weight cannot express it: left out of the default model (see the fit).
    weight_minutiae: float = 0.0
    minutiae_cap: int = 60
    score_db_per_decade: float = 20.0  # 20 points = a tenfold lower estimated failure probability

    def __post_init__(self):
        for name in ("bias", "weight_log_area", "weight_coherence", "weight_clarity", "weight_ridge_fraction",
                     "weight_minutiae", "min_area_mm2", "score_db_per_decade"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise invalid(name, "a finite number", v)
        for name in ("weight_log_area", "weight_coherence", "weight_clarity", "weight_ridge_fraction",
                     "weight_minutiae", "min_area_mm2"):
            if getattr(self, name) < 0:
                raise invalid(name, "a number >= 0 (the score must not fall when a feature improves)",
                              getattr(self, name))
        if not self.score_db_per_decade > 0:
            raise invalid("score_db_per_decade", "a number > 0", self.score_db_per_decade)
        for name, lo, hi in (("block_size_px", 8, 128), ("minutiae_cap", 1, 1000)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise invalid(name, f"an int in [{lo}, {hi}]", v)


def to_json(params: Any) -> str:
    """Serialise a parameter object to canonical JSON (sorted keys)."""
    if not dataclasses.is_dataclass(params) or isinstance(params, type):
        raise invalid("params", "a biomatch parameter dataclass instance", params)
    payload = {"type": type(params).__name__, "values": dataclasses.asdict(params)}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


# Fields added to a parameter class after stored parameter sets (gallery manifests, shard
# stores) began to be written, with the value under which the field changes nothing: a stored
# set that lacks the field was written by a version without it and is read with that value, so
# that upgrading biomatch never changes the scores of a gallery built before (today's default
# would).  Fields added later and not listed here take their default.
_ADDED_FIELDS: dict[str, dict[str, Any]] = {
    # 2026-12-06, the orientation-field agreement: weight 0 is the minutiae-only score (the scale
    # curve applies only where the agreement does, so its default is inert then).
    # 2026-12-07, minutia reliability: weight 0 counts every minutia alike, the earlier score.
    # 2026-12-07, the robust orientation agreement: zero credit angle 0 is the mean agreement.
    "MatchParams": {"orientation_weight": 0.0, "lssr_reliability_weight": 0.0, "elastic_reliability_weight": 0.0,
                    "orientation_zero_credit_deg": 0.0},
    # 2026-12-07, the finger code's plain-sized window: 0 is no window, the codes before it.
    "EncodeParams": {"window_width_mm": 0.0, "window_height_mm": 0.0, "window_from_width_mm": 0.0},
    # 2026-12-08, the coarse orientation of the ridge-period stage: 0 reads the fine field, as before.
    "ExtractionParams": {"period_coarse_below_coherence": 0.0},
}


# Earlier default ExtractionParams generations (their params_hash) whose templates score on one
# scale with the current default's: the verdict of benchmarks/cross_generation.py (FVC2002
# DB1-4_B; the FMR at every shipped threshold not shown above its target on mixed pairs, the FNMR
# within the same-generation one's interval), measured figures beside each.  A gallery fixed at
# one of them or at the current default accepts templates of any of them, so that a registry
# keeps enrolling after an upgrade without re-extracting what it holds.
EXTRACTION_LINEAGE: tuple[str, ...] = (
    # 2026-12-08, before the ridge-period stage read the coarse orientation where the fine one is
    # incoherent (period_coarse_below_coherence): 134 of the 320 FVC2002 DB1-4_B templates change
    # (29/28/50/27); benchmarks/cross_generation.py new x new / mixed / old x old EER/FMR1000 %:
    # DB1_B 0.37/1.07, 0.53/1.07, 0.42/1.07; DB2_B 0.42/1.43, 0.43/1.61, 0.42/2.14; DB3_B 0.35/2.14,
    # 0.35/2.14, 0.70/0.71; DB4_B 0.70/1.07 each; pooled FMR at each shipped threshold 0.964 / 0.972 /
    # 0.998, 0.069 / 0.082 / 0.095, 0.009% each, FNMR at FMR 0.1% 2.05 / 2.23 / 2.23%: "one scale".
    "fa33b857d79d5b1b",
    # 2026-12-07, before small prints kept the blocks bordering their ridge area
    # (small_print_area_mm2): 4 of the 320 FVC2002 DB1-4_B templates change (DB2_B 110_6, DB3_B
    # 106_7, 108_1, 108_3: clear ridge area under 100 mm^2); benchmarks/cross_generation.py new x
    # new, mixed and old x old 0.42/1.07, 0.42/2.14, 0.70/0.71, 0.70/1.07 EER/FMR1000 % on every
    # set, pooled FMR at each shipped threshold equal (0.998, 0.095, 0.009%), FNMR at FMR 0.01%
    # 2.77 / 2.81 / 2.86%: "one scale".
    "279fd3a643993286",
    # 2026-12-07, before the area-relative minutiae cap (max_minutiae_area_mm2): its templates differ
    # only on prints larger than 300 mm^2 with more than 80 minutiae; on FVC2002 DB1-4_B not one of
    # the 320 templates changed (none reaches 80 minutiae), so new x new, mixed and old x old give
    # the same EER / FMR1000 on every set (0.35/1.07, 0.35/0.36, 0.70/1.79, 0.70/1.07) and the same
    # pooled FMR / FNMR at each shipped threshold (benchmarks/cross_generation.py: "one scale").
    "763063c72d9e6916",
    # 2026-12-07, before the light-scratch stage (scratch_depth_sigma): no FVC2002 DB1-4_B template's
    # minutiae changed (benchmarks/cross_generation.py: new x new, mixed and old x old 0.35/1.07,
    # 0.35/0.36, 0.70/1.79, 0.70/1.07 EER/FMR1000 %, the same pooled FMR/FNMR at each shipped
    # threshold: "one scale"); on worn prints the new templates lose the scratches' false minutiae.
    "ddaf88a9d25a8003",
    # 2026-12-07, before weakly periodic blocks kept the mask (ridge_weak_peak_min): the minutiae
    # of 154 of the 320 FVC2002 DB1-4_B templates change (33/36/46/39), at the edge of faint areas;
    # benchmarks/cross_generation.py
    # new x new / mixed / old x old EER/FMR1000 %: DB1_B 0.37/1.07, 0.37/1.07, 0.35/1.07; DB2_B
    # 0.35/1.43, 0.35/0.89, 0.35/0.36; DB3_B 0.70/1.07, 0.71/1.43, 0.70/1.79; DB4_B 0.72/1.07,
    # 0.71/1.07, 0.70/1.07; pooled FMR at each shipped threshold equal (0.99, 0.095, 0.009%), FNMR
    # at FMR 0.1% 2.23 / 2.05 / 1.96%: "one scale".
    "303df0fc7cc41f56",
)


def from_json(text: str, cls: type[T]) -> T:
    """Parse JSON written by :func:`to_json` into ``cls``; unknown keys are refused.

    A field the JSON lacks because it was written before the field existed takes the value
    that reproduces that version's behaviour where one is declared (``_ADDED_FIELDS``), else
    its default.
    """
    values = _stored_values(text, cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(values) - known
    if unknown:
        raise invalid("text", f"only fields of {cls.__name__}", sorted(unknown))
    legacy = {k: v for k, v in _ADDED_FIELDS.get(cls.__name__, {}).items() if k not in values}
    return cls(**legacy, **values)


def _stored_values(text: str, cls: type) -> dict:
    try:
        payload = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise invalid("text", "JSON written by biomatch.params.to_json", text) from exc
    if not isinstance(payload, dict) or payload.get("type") != cls.__name__:
        raise invalid("text", f"JSON of a {cls.__name__}", text)
    values = payload.get("values", {})
    if not isinstance(values, dict):
        raise invalid("text", f"JSON of a {cls.__name__} (an object of values)", text)
    return values


def params_hash(params: Any) -> str:
    """Return a 16-hex-digit hash identifying a parameter generation."""
    return hashlib.sha256(to_json(params).encode()).hexdigest()[:16]


def stored_params_hash(text: str, cls: type) -> str:
    """The :func:`params_hash` of the parameter set stored as ``text`` by :func:`to_json`, as it
    was when written (a version with fewer fields wrote fewer values).

    Raises
    ------
    InvalidInputError
        ``text`` is not JSON of a ``cls``.
    """
    payload = {"type": cls.__name__, "values": _stored_values(text, cls)}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
