"""1:1 and 1:N fingerprint matching with Minutia Cylinder-Code (native core).

Algorithm (Cappelli, Ferrara & Maltoni, "Minutia Cylinder-Code: a new representation
and matching technique for fingerprint recognition", IEEE TPAMI 32(12), 2010):

1. every minutia gets a *cylinder*: a 16 x 16 x 6 bit grid of the neighbouring
   minutiae around it, rotated with it, with a validity mask for cells outside the
   print (the minutiae convex hull enlarged by 50 px);
2. every two cylinders of probe and candidate whose directions differ by at most
   90 degrees get a local similarity from bit popcounts over their common valid cells
   (cylinders are stored as their disc cells only, sorted by direction; the AVX-512
   VPOPCNTDQ kernel is chosen at run time when the CPU has it, else a portable kernel
   that gives bit-identical scores);
3. LSS-R: the min(n_A, n_B) most similar pairs are relaxed against each other's
   geometric compatibility rho(t, k) and the mean of the n_P (4..12) most efficient
   pairs is the score.  Minutia reliability (biomatch's addition, on by default,
   ``MatchParams.lssr_reliability_weight``): each pair's relaxed similarity counts by
   sqrt(q_A q_B) (minutia quality / 100) relative to the mean over the relaxed pairs, and
   the n_P pairs are those of highest reliability x efficiency (the later stages keep the
   paper's top pairs);
4. elastic consistency (on by default, ``MatchParams.elastic_*``): each of the top
   pairs anchors an alignment (anchors aligned like one already tried are skipped),
   the other minutiae pair within 8 px + 5% of their distance from the anchor and
   20 degrees, greedily one-to-one; the best anchor's rotation (its two minutiae's
   direction difference, off by their direction errors) is refitted once on the minutiae
   it paired (least squares about the anchor) and the larger count kept;
   elastic = n_e^2 / (overlap_A * overlap_B), where a minutia of the overlap left unpaired
   counts its quality / 100 (``MatchParams.elastic_reliability_weight``: a missing partner of
   a minutia on blurred or border ridges is weak evidence against the pair), and
   score = sqrt(lssr * elastic).  Gate: pairs with lssr < ``elastic_gate`` (0.0158,
   about the impostor median of LSS-R) skip the stage and score lssr itself.  That
   fallback is deterministic, monotone and below the gate, so every pair scoring >= the
   gate went through the stage and scores exactly what it would without the gate:
   1:N rankings above the gate are unchanged, and at any threshold >= the gate (all
   of :data:`SCORE_AT_FMR` are 5-7x it) the gate can only reject, i.e. never raises
   the FMR and raises the FNMR by at most the share of genuine pairs with
   lssr < gate (none of 1,120 on FVC2002 B; 53% of the impostors skip the stage);
5. orientation-field agreement (on by default, ``MatchParams.orientation_weight`` = w): for
   pairs that went through the elastic stage, when both templates carry a block orientation
   field (:attr:`~biomatch.template.Template.orientation_grid`), a rigid transform fitted by
   least squares on the best anchor's elastic pairs (the global transform of step 6 when they
   are fewer than 3) maps the candidate's 16 px blocks onto the probe's, and
   score *= 1 - w + w * R, R the robust agreement: each overlapping block earns a credit (1 at
   0 degrees of difference, 0 from 30), and the largest connected region of blocks more than
   45 degrees off, when it holds at most half of the overlap, counts at half weight
   (R = C / (n - m) * (1 - m / 2n); ``MatchParams.orientation_*``), so that one scarred, turned
   or smudged patch does not count as disagreement of the whole print.  Genuine pairs agree
   (median A2 = mean cos 2(difference) ~0.97), impostors whose minutiae happen to fit do not
   (median ~0.65); it lowers FMR1000 on degraded prints.  The
   weighted score is then mapped onto the minutiae-only scale by a monotone piecewise-linear
   curve (``MatchParams.orientation_scale_from`` / ``orientation_scale_to``) that sends its
   thresholds at FMR 1%, 0.1%, 0.01% (0.0650, 0.0869, 0.0966) onto those of
   :data:`SCORE_AT_FMR` (0.0692, 0.0915, 0.1105), so that one table serves every pair, with
   or without the fields.  Gated pairs are untouched (they still score < the gate, so the gate
   argument above holds); pairs without the fields whose templates both report varying minutia
   qualities go through their own curve (``MatchParams.reliability_scale_from`` / ``_to``:
   0.0841, 0.1062, 0.1224 onto the same table); templates without the fields or qualities
   (ISO/ANSI imports without qualities, generated templates) score as the paper's matcher
   with the elastic stage;
6. optionally (``MatchParams.global_weight``) a rigid transform fitted on those pairs
   counts the one-to-one consistent minutiae (reported by :meth:`explain` always).

The kernels live in ``native/`` (one translation unit per stage, listed in
``native/stages.hpp``; the parameter table ``native/mcc_params.def`` mirrors
:class:`~biomatch.params.MatchParams`); this module validates and converts.  Speed (one thread,
``benchmarks/bench_match_speed.py``, which names the kernel it ran) is in the README's results,
not here.  :meth:`FingerprintMatcher.match_many`
checks a list of PreparedTemplates at C speed (type and parameter hash, map() over the slots)
and hands their native objects over; lists holding Templates or anything else take the
validating Python path.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np

from .errors import IncompatibleTemplateError, InvalidInputError, invalid
from .params import MatchParams, params_hash
from .template import Template

__all__ = ["FingerprintMatcher", "PreparedTemplate", "prepare", "SCORE_AT_FMR"]

SCORE_AT_FMR: dict[float, float | None] = {
    # ---- THRESHOLDS: score at which the false match rate equals the key -------------------
    # Measured on FVC2002 DB1-4_B with biomatch's own extractor, all-impostor protocol,
    # the four databases' impostor scores pooled (11,520 pairs), MatchParams() defaults
    # (elastic stage on, templates without an orientation field): threshold = the smallest
    # score such that the fraction of impostors scoring >= it is <= the FMR; rounded up to 4
    # digits, the fractions are 0.981%, 0.095% and 0.0087%; FNMR there (1,120 genuine pairs
    # pooled) 1.52%, 2.95% and 4.38%.
    # Re-measured after the ridge-band segmentation (2026-12-06; 0.001 moved from 0.0914).
    # Kept as the one scale when minutia reliability came (2026-12-07): the two curves below
    # send the new scores' thresholds onto it; at it the FNMR fell to 0.62%, 1.96%, 2.86%
    # (fields and reliability), 0.89%, 2.23%, 3.57% (reliability, no fields).
    # ONE SCALE: pairs scored with the orientation-field agreement (both templates carry a
    # field, through the elastic stage) have their own thresholds, 0.0650, 0.0869 and 0.0966
    # with minutia reliability and the robust agreement (2026-12-07; 0.0685, 0.0928, 0.1037 with
    # the mean agreement, 0.0556, 0.0793, 0.0868 without reliability; measured the same way,
    # FVC2002 DB1-4_B undegraded, 11,520 impostors pooled; fractions 0.998%, 0.095%, 0.009%;
    # FNMR there 0.98%, 2.23%, 2.86%).  The
    # native matcher maps those scores through the monotone piecewise-linear curve (0, 0),
    # (0.0650, 0.0692), (0.0869, 0.0915), (0.0966, 0.1105), (1, 1) (MatchParams.orientation_
    # scale_from / _to), and reliability-weighted scores without the fields through
    # (0.0841, 0.0692), (0.1062, 0.0915), (0.1224, 0.1105) (reliability_scale_from / _to), so
    # that every score, with or without the fields or qualities, is read against this one
    # table.  benchmarks/robustness.py's calibration table gives the FMR at these thresholds
    # under each degradation (see the README).
    # 0.01% rests on the single highest impostor of the pool (the tail of the pooled
    # distribution, not a stable estimate): re-measure it on > 10^5 impostor pairs.
    0.01: 0.0692,
    0.001: 0.0915,
    0.0001: 0.1105,
}
"""Decision thresholds: FMR (fraction) -> minimum score.  ``None`` = not yet measured."""


def _native():
    # Imported lazily so that ``import biomatch`` works without the compiled core.
    import biomatch._native as native

    return native


class PreparedTemplate:
    """A template with its cylinders precomputed, for matching against many probes.

    Opaque; build it with :func:`prepare`.  Immutable and thread-safe.  Memory: about
    ``n * (350 + 12 * n)`` bytes for ``n`` minutiae (bits and mask of the 1248 disc
    cells per valid cylinder plus three ``n x n`` float tables), ~49 KB for 50 minutiae, plus
    with an orientation grid one byte per block and 16 per print block (~4.7 KB on FVC2002 B).
    """

    __slots__ = ("template", "params_hash", "_native")

    def __init__(self, template: Template, params_hash_: str, native_obj):
        self.template = template
        self.params_hash = params_hash_
        self._native = native_obj

    @property
    def n_valid_cylinders(self) -> int:
        return self._native.n_valid_cylinders

    @property
    def nbytes(self) -> int:
        return self._native.nbytes

    def __repr__(self) -> str:
        return (f"PreparedTemplate(n_minutiae={len(self.template)}, "
                f"valid_cylinders={self.n_valid_cylinders}, params={self.params_hash})")


# Readers of PreparedTemplate's slots: TypeError on any other type, so that a list can be checked
# and unwrapped at C speed by map() (FingerprintMatcher._prepared_natives).
_NATIVE_OF = PreparedTemplate._native.__get__
_HASH_OF = PreparedTemplate.params_hash.__get__


class _Context:
    """Native configuration for one MatchParams (immutable, shareable between threads)."""

    __slots__ = ("params", "hash", "config")

    def __init__(self, params: MatchParams):
        if not isinstance(params, MatchParams):
            raise invalid("params", "a biomatch.params.MatchParams", type(params).__name__)
        self.params = params
        self.hash = params_hash(params)
        try:
            # Every field of the native parameter table (native/mcc_params.def), by name.
            self.config = _native().Config(dataclasses.asdict(params))
        except ValueError as exc:
            raise InvalidInputError(f"params: {exc}") from exc


@functools.lru_cache(maxsize=8)
def _context(params: MatchParams) -> _Context:
    """The shared context of ``params`` (hashing and converting the parameters costs as much as
    preparing a small template, and a gallery prepares thousands per search)."""
    return _Context(params)


_LAST_CONTEXT: tuple = (None, None)
"""(params, context) of the last lookup: a gallery prepares ~300 templates per search with one
MatchParams object, and hashing its fields for the cache costs ~8 us per call."""


def _context_of(params) -> _Context:
    global _LAST_CONTEXT
    last, ctx = _LAST_CONTEXT  # one tuple read: consistent under threads
    if params is last:
        return ctx
    try:
        ctx = _context(params)
    except TypeError:  # not hashable: not a MatchParams, let _Context say so
        return _Context(params)
    _LAST_CONTEXT = (params, ctx)
    return ctx


def _prepare(ctx: _Context, template: Template) -> PreparedTemplate:
    if not isinstance(template, Template):
        raise invalid("template", "a biomatch Template", type(template).__name__)
    xyaq = np.ascontiguousarray(template.as_float_array(), dtype=np.float32)
    # orientation_grid: validated, C-contiguous uint8 (Template), or None
    return PreparedTemplate(template, ctx.hash, _native().prepare(ctx.config, xyaq, template.orientation_grid))


def prepare(template: Template, params: MatchParams = MatchParams()) -> PreparedTemplate:
    """Precompute the cylinders of a template (for 1:N galleries).

    Parameters
    ----------
    template : Template
    params : MatchParams
        Must equal the matcher's parameters: a PreparedTemplate made with other
        parameters is refused with :class:`~biomatch.errors.IncompatibleTemplateError`.

    Returns
    -------
    PreparedTemplate
    """
    return _prepare(_context_of(params), template)


class FingerprintMatcher:
    """Compare one probe against candidates; scores in ``[0, 1]``.

    The score is sqrt(LSS-R x elastic) (see the module docstring: LSS-R of MCC, the mean
    relaxed local similarity of the 4-12 best pairs, times the elastic consistency; LSS-R alone
    below ``MatchParams.elastic_gate``), optionally blended with the global consistency term;
    when both templates carry a block orientation field it is multiplied by their robust
    agreement R (in [0, 1]) and mapped back onto the same scale (``MatchParams.orientation_scale_from`` /
    ``_to``; without the fields, scores weighted by minutia reliability go through
    ``MatchParams.reliability_scale_from`` / ``_to``), so that the thresholds below hold for
    every pair.  0 means no evidence (also for templates with fewer than
    ``MatchParams.min_minutiae`` minutiae or without valid cylinders); a print against
    itself scores ~1.0, two impressions of one finger typically 0.1-0.5 without the fields
    (median 0.33 on FVC2002 B, 5th percentile 0.12; the mapping moves scores above the
    thresholds by at most a few per cent)
    and impostors 0.01-0.07 (median 0.014: half of them are gated and score their LSS-R;
    99th percentile 0.069).  Decision thresholds
    (see :data:`SCORE_AT_FMR`, FVC2002 DB1-4_B, biomatch's extractor, all-impostor
    protocol, 11,520 impostor pairs pooled):

    ======== ======
    FMR      score
    ======== ======
    1%       0.0692
    0.1%     0.0915
    0.01%    0.1105 (tail of the pooled distribution: an extrapolation, not a measurement)
    ======== ======

    Parameters
    ----------
    probe : Template or PreparedTemplate
    params : MatchParams

    Notes
    -----
    Thread-safe: the matcher is immutable after construction and the native core keeps
    no global state; :meth:`match_many` releases the GIL and runs ``n_threads``
    native threads.  Memory: the probe's cylinders (~50 KB for 50 minutiae).
    Scores are deterministic and do not depend on the popcount kernel, but are not
    exactly symmetric (``match(a, b)`` may differ from ``match(b, a)`` in the last
    digits through ties and the global fit).

    Examples
    --------
    >>> m = FingerprintMatcher(probe)                       # doctest: +SKIP
    >>> m.match(candidate) >= SCORE_AT_FMR[0.001]            # doctest: +SKIP
    >>> scores = m.match_many([prepare(t) for t in gallery], n_threads=2)  # doctest: +SKIP
    """

    def __init__(self, probe: Template | PreparedTemplate, params: MatchParams = MatchParams()):
        self._ctx = _context_of(params)
        self._probe = self._coerce(probe, "probe")

    @property
    def params(self) -> MatchParams:
        return self._ctx.params

    def _coerce(self, t, name: str) -> PreparedTemplate:
        if isinstance(t, PreparedTemplate):
            if t.params_hash != self._ctx.hash:
                raise IncompatibleTemplateError(
                    f"{name}: expected a PreparedTemplate made with MatchParams hash {self._ctx.hash}, "
                    f"got one made with {t.params_hash}")
            return t
        if isinstance(t, Template):
            return _prepare(self._ctx, t)
        raise invalid(name, "a Template or PreparedTemplate", type(t).__name__)

    def match(self, candidate: Template | PreparedTemplate) -> float:
        """Score of the probe against one candidate, in ``[0, 1]``."""
        c = self._coerce(candidate, "candidate")
        return float(_native().match(self._ctx.config, self._probe._native, c._native))

    def match_many(self, candidates: Sequence[Template | PreparedTemplate], n_threads: int = 1) -> np.ndarray:
        """Scores of the probe against many candidates.

        Parameters
        ----------
        candidates : sequence of Template or PreparedTemplate
            Pass PreparedTemplates for speed: Templates are prepared here, one by one.
        n_threads : int
            Native threads (std::thread, GIL released).

        Returns
        -------
        ndarray of float32, shape (len(candidates),)
        """
        if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or not 1 <= n_threads <= 1024:
            raise invalid("n_threads", "an int in [1, 1024]", n_threads)
        if isinstance(candidates, (Template, PreparedTemplate)) or not hasattr(candidates, "__len__"):
            raise invalid("candidates", "a sequence of Template or PreparedTemplate", type(candidates).__name__)
        natives = None if isinstance(candidates, (str, bytes)) else self._prepared_natives(candidates)
        if natives is None:
            natives = [self._coerce(c, f"candidates[{i}]")._native for i, c in enumerate(candidates)]
        return _native().match_many(self._ctx.config, self._probe._native, natives, int(n_threads))

    def _prepared_natives(self, candidates) -> list | None:
        """The native objects of ``candidates`` when all are PreparedTemplates of this matcher's
        parameters, else None (the caller then takes the validating path, which also prepares
        Templates).  Two C-level passes: the slot readers refuse anything but a PreparedTemplate."""
        try:
            natives = list(map(_NATIVE_OF, candidates))
            hashes = set(map(_HASH_OF, candidates))
        except (TypeError, AttributeError):
            return None
        return natives if hashes <= {self._ctx.hash} else None

    def explain(self, candidate: Template | PreparedTemplate) -> dict:
        """Score breakdown (transparency), under stable keys.

        Returns
        -------
        dict
            ``valid_cylinders`` (probe, candidate); ``lss_pairs`` (probe indices,
            candidate indices) of the pairs entering relaxation, in no particular order; ``lss_similarity`` and
            ``relaxed_similarity`` of those pairs; ``n_pairs`` (n_P); ``top_pairs`` and
            ``top_relaxed_similarity`` (the n_P pairs by efficiency); ``lssr_score``;
            ``rotation_rad``, ``translation_px`` of the fitted rigid transform (y-up
            frame: y is negated); ``consistent_pairs``, ``n_consistent``, ``overlap``,
            ``global_score``; ``elastic_pairs``, ``n_elastic_consistent``,
            ``elastic_overlap``, ``elastic_score`` of the best anchor (0 and empty when the
            stage is off or gated out); ``orientation_agreement`` (A2, the mean cos 2(difference)
            of the block orientations), ``orientation_blocks`` (overlapping print blocks),
            ``orientation_robust_agreement`` (R, in [0, 1]), ``orientation_conflict_blocks``
            (the blocks of the conflict region R counted at its weight; 0 when none was set
            apart), ``orientation_rotation_rad`` and ``orientation_translation_px`` (the
            alignment used, as ``rotation_rad``), ``orientation_factor`` (the score's
            multiplier, ``1 - w + w * R``) -- None, 0, None, 0, None, None and 1.0 when the term does not
            apply (a template without ``orientation_grid``, a gated pair, a score of 0);
            ``orientation_fused_score`` (the score times the factor, before the mapping onto the
            minutiae-only scale) and ``orientation_scaled_score`` (after it, = ``score``) -- None
            when the factor does not apply (as above, or ``orientation_weight`` = 0);
            ``score`` (equals :meth:`match`).
        """
        c = self._coerce(candidate, "candidate")
        return dict(_native().explain(self._ctx.config, self._probe._native, c._native))
