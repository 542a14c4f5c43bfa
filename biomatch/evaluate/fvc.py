"""The FVC verification protocol on a folder of ``<finger>_<impression>.<ext>`` images.

Protocol (Maio et al., FVC2002; counts for a B set of 10 fingers x 8 impressions)
---------------------------------------------------------------------------------
- Every image is extracted once; its CPU time (``time.process_time``) is recorded.
- *Genuine*: every unordered pair of impressions of the same finger (28 per finger: 280).
- *Standard impostors* (``eer_fvc``): the first impression of each finger against the
  first impression of every other finger, unordered (45).
- *All impostors* (``eer``, ``fmr100``, ...): every impression against every impression
  of every other finger, unordered (80 x 72 / 2 = 2880); it pins the low-FMR end far
  better than 45 pairs.

Each unordered pair ``(i, j)``, ``i < j`` in sorted (finger, impression) order, is
compared once with image ``i`` as the probe, as in FVC ("if g is matched with h, the
symmetric match h against g is not executed"); the result therefore assumes a
symmetric matcher, or else measures its probe-first direction. Comparisons run as
one ``match_many`` call per probe (image ``i`` against all ``j > i``); the standard
impostor set is a subset of the all-impostor set, so nothing is compared twice.
A template that failed to extract (empty), or an image that cannot be read
(:class:`~biomatch.errors.ImageError`, logged), scores 0 against everything and is
not passed to the matcher; the count is ``n_failed_extractions``.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import DatasetError, ImageError, invalid
from .metrics import compute_metrics

__all__ = ["FvcImage", "FvcResult", "list_fvc_images", "fvc_pairs", "run_fvc", "StderrProgress"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".bmp", ".pgm", ".jpg", ".jpeg", ".jp2", ".wsq")
_NAME = re.compile(r"^(\d+)_(\d+)$")

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stage is ``"extract"`` or ``"match"``."""


@dataclass(frozen=True)
class FvcImage:
    """One image of an FVC-style folder."""

    finger: int
    impression: int
    path: Path

    @property
    def name(self) -> str:
        return f"{self.finger}_{self.impression}"


def list_fvc_images(folder: str | Path) -> list[FvcImage]:
    """The ``<finger>_<impression>.<ext>`` images of ``folder``, sorted by finger then impression.

    Other files are ignored (with a debug log). Raises :class:`DatasetError` when the
    folder is missing, holds no such image, holds one image twice under two
    extensions, or has fewer than two fingers or a finger with a single impression.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"folder: expected a directory of <finger>_<impression>.<ext> images, got {str(root)!r}")
    found: dict[tuple[int, int], Path] = {}
    for p in sorted(root.iterdir()):
        m = _NAME.match(p.stem)
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES or not m:
            log.debug("fvc: ignoring %s", p.name)
            continue
        key = (int(m.group(1)), int(m.group(2)))
        if key in found:
            raise DatasetError(f"folder: image {key[0]}_{key[1]} appears twice: {found[key].name} and {p.name}")
        found[key] = p
    if not found:
        raise DatasetError(f"folder: expected <finger>_<impression>.<ext> images "
                           f"({', '.join(IMAGE_SUFFIXES)}) in {str(root)!r}, found none")
    images = [FvcImage(f, i, p) for (f, i), p in sorted(found.items())]
    fingers = sorted({im.finger for im in images})
    if len(fingers) < 2:
        raise DatasetError(f"folder: expected at least 2 fingers for impostor comparisons, got {len(fingers)}")
    single = [f for f in fingers if sum(im.finger == f for im in images) < 2]
    if single:
        raise DatasetError(f"folder: expected at least 2 impressions per finger, fingers {single} have 1")
    return images


def fvc_pairs(images: Sequence[FvcImage]) -> dict[str, np.ndarray]:
    """Index pairs ``(i, j)``, ``i < j``, of the three comparison sets.

    Returns
    -------
    dict with keys ``"genuine"``, ``"impostor"`` (all-impostor) and ``"impostor_fvc"``
    (first impressions only), each an ``int64 (n, 2)`` array.
    """
    n = len(images)
    ii, jj = np.triu_indices(n, k=1)
    finger = np.array([im.finger for im in images])
    imp = np.array([im.impression for im in images])
    first = np.zeros(n, bool)
    for f in np.unique(finger):  # the lowest-numbered impression is the "first" one
        idx = np.flatnonzero(finger == f)
        first[idx[np.argmin(imp[idx])]] = True
    same = finger[ii] == finger[jj]
    pairs = np.stack([ii, jj], axis=1).astype(np.int64)
    return {
        "genuine": pairs[same],
        "impostor": pairs[~same],
        "impostor_fvc": pairs[~same & first[ii] & first[jj]],
    }


@dataclass
class FvcResult:
    """Outcome of :func:`run_fvc`. Rates are fractions; times are CPU times.

    ``eer``, ``fmr100``, ``fmr1000``, ``zerofmr`` use the all-impostor set;
    ``eer_fvc`` and ``fmr100_fvc`` the standard 45-pair set. Score arrays are float64,
    aligned with the pair arrays (image indices into ``names``).
    """

    eer: float
    fmr100: float
    fmr1000: float
    zerofmr: float
    eer_fvc: float
    fmr100_fvc: float
    n_genuine: int
    n_impostor: int
    n_impostor_fvc: int
    n_failed_extractions: int
    extract_ms_median: float
    match_us_median: float
    prepare_ms_median: float
    names: list[str] = field(repr=False)
    pairs: dict[str, np.ndarray] = field(repr=False)
    scores: dict[str, np.ndarray] = field(repr=False)
    extract_ms: np.ndarray = field(repr=False)

    @property
    def genuine(self) -> np.ndarray:
        return self.scores["genuine"]

    @property
    def impostor(self) -> np.ndarray:
        return self.scores["impostor"]

    def summary(self) -> dict[str, Any]:
        """The JSON summary (the keys of ``biomatch evaluate fvc --json``)."""
        return {
            "eer": self.eer, "fmr100": self.fmr100, "fmr1000": self.fmr1000, "zerofmr": self.zerofmr,
            "eer_fvc": self.eer_fvc, "fmr100_fvc": self.fmr100_fvc,
            "n_genuine": self.n_genuine, "n_impostor": self.n_impostor,
            "n_impostor_fvc": self.n_impostor_fvc, "n_failed_extractions": self.n_failed_extractions,
            "extract_ms_median": self.extract_ms_median, "match_us_median": self.match_us_median,
            "prepare_ms_median": self.prepare_ms_median,
        }

    def to_state(self) -> dict[str, Any]:
        """Everything, as JSON-compatible values (for caches); inverse of :meth:`from_state`."""
        return {"summary": self.summary(), "names": list(self.names),
                "pairs": {k: v.tolist() for k, v in self.pairs.items()},
                "scores": {k: v.tolist() for k, v in self.scores.items()},
                "extract_ms": self.extract_ms.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "FvcResult":
        s = state["summary"]
        return cls(**{k: s.get(k, 0.0) for k in cls._summary_fields()}, names=list(state["names"]),
                   pairs={k: np.asarray(v, np.int64).reshape(-1, 2) for k, v in state["pairs"].items()},
                   scores={k: np.asarray(v, np.float64) for k, v in state["scores"].items()},
                   extract_ms=np.asarray(state["extract_ms"], np.float64))

    @staticmethod
    def _summary_fields() -> tuple[str, ...]:
        return ("eer", "fmr100", "fmr1000", "zerofmr", "eer_fvc", "fmr100_fvc", "n_genuine", "n_impostor",
                "n_impostor_fvc", "n_failed_extractions", "extract_ms_median", "match_us_median",
                "prepare_ms_median")

    def identification(self):
        """Closed-set searches: every impression but the first of each finger against a gallery of
        first impressions (one entry per finger), scored from the pairs already compared.

        Returns
        -------
        SearchOutcomes
            ``gallery_size`` = number of fingers.
        """
        from .identification import outcomes_from_matrix

        n = len(self.names)
        full = np.zeros((n, n))
        for kind in ("genuine", "impostor"):
            p = self.pairs[kind]
            full[p[:, 0], p[:, 1]] = self.scores[kind]
            full[p[:, 1], p[:, 0]] = self.scores[kind]  # symmetric, as in the protocol
        finger = [name.split("_")[0] for name in self.names]
        imp = [int(name.split("_")[1]) for name in self.names]
        fingers = sorted(set(finger), key=finger.index)
        gallery = [min((k for k in range(n) if finger[k] == f), key=lambda k: imp[k]) for f in fingers]
        probes = [k for k in range(n) if k not in set(gallery)]
        mate = np.array([fingers.index(finger[k]) for k in probes], dtype=np.int64)
        return outcomes_from_matrix(full[np.ix_(probes, gallery)], mate)

    def score_rows(self):
        """``(kind, probe, candidate, score)`` rows for CSV export; kind ``genuine`` or ``impostor``
        (all-impostor set; the standard pairs are those whose two names end in the first impression)."""
        for kind in ("genuine", "impostor"):
            for (i, j), s in zip(self.pairs[kind], self.scores[kind]):
                yield kind, self.names[i], self.names[j], float(s)


class StderrProgress:
    """A one-line progress display on an interactive stderr (silent otherwise)."""

    def __init__(self, stream=None, label: str = ""):
        self.stream = stream or sys.stderr
        self.label = label
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.2:
            return
        self._last = now
        width = 30
        filled = width * done // max(total, 1)
        self.stream.write(f"\r{self.label}{stage:8s} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _default_extract(params):
    def extract(path: Path, dpi: float):
        from ..extract import extract as bm_extract

        return bm_extract(path, dpi, params) if params is not None else bm_extract(path, dpi)

    return extract


def _default_match_many(n_threads: int):
    def match_many(probe, candidates):
        from ..match import FingerprintMatcher

        return FingerprintMatcher(probe).match_many(candidates, n_threads=n_threads)

    return match_many


def _default_prepare(template):
    from ..match import prepare

    return prepare(template)


def _is_empty(template) -> bool:
    try:
        return len(template) == 0
    except TypeError:
        return template is None


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    if values.size == 0:
        return math.nan
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2.0)])


def run_fvc(folder: str | Path, dpi: float, *, params=None, n_threads: int = 1,
            extract: Callable[[Path, float], Any] | None = None,
            match_many: Callable[[Any, list], Sequence[float]] | None = None,
            prepare: Callable[[Any], Any] | None = None,
            is_empty: Callable[[Any], bool] = _is_empty,
            progress: Progress | None = None) -> FvcResult:
    """Run the FVC protocol (see the module docstring) on one folder.

    Parameters
    ----------
    folder : path
        ``<finger>_<impression>.<ext>`` images (FVC layout).
    dpi : float
        Resolution of the images (FVC2002: 500, 569 for DB2, 500, 500).
    params : ExtractionParams, optional
        Extraction parameters of the default extractor.
    n_threads : int
        Threads of the default ``match_many`` (1 for single-core timing).
    extract, match_many, prepare, is_empty : callables, optional
        Replace biomatch's extractor / matcher (used for peers and tests):
        ``extract(path, dpi) -> template``; ``prepare(template) -> object`` precomputes
        what the matcher needs once per template (enrolment; identity when
        ``extract`` is given); ``match_many(probe, candidates) -> scores`` over prepared
        templates (higher = more similar); ``is_empty(template) -> bool``.
    progress : callable, optional
        ``progress(stage, done, total)``, called during extraction and matching.

    Returns
    -------
    FvcResult
        Times: ``extract_ms_median`` is the median CPU time per image (reading included);
        ``prepare_ms_median`` that of the per-template precomputation (biomatch: the
        MCC cylinders, :func:`biomatch.match.prepare`), done once per template as at enrolment;
        ``match_us_median`` the median CPU time per comparison, where each comparison of
        one ``match_many`` call is charged the call's time divided by its size.
    """
    from ..imaging import check_dpi

    dpi = check_dpi(dpi)
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise invalid("n_threads", "an int >= 1", n_threads)
    images = list_fvc_images(folder)
    if prepare is None:
        prepare = _default_prepare if extract is None else (lambda t: t)
    extract = extract or _default_extract(params)
    match_many = match_many or _default_match_many(n_threads)
    n = len(images)

    templates, extract_ms = [], np.empty(n)
    for k, im in enumerate(images):
        t0 = time.process_time()
        try:
            templates.append(extract(im.path, dpi))
        except ImageError as exc:  # an unreadable image is a failure to enrol: it scores 0, as in FVC
            log.warning("fvc: %s: %s", im.path.name, exc)
            templates.append(None)
        extract_ms[k] = (time.process_time() - t0) * 1e3
        if progress:
            progress("extract", k + 1, n)
    empty = np.array([is_empty(t) for t in templates], bool)
    prepare_ms = np.zeros(n)
    for k in np.flatnonzero(~empty):
        t0 = time.process_time()
        templates[k] = prepare(templates[k])
        prepare_ms[k] = (time.process_time() - t0) * 1e3
    if empty.any():
        log.warning("fvc: %d of %d images gave no template: %s", int(empty.sum()), n,
                    ", ".join(images[k].name for k in np.flatnonzero(empty)))

    # score[i, j] for i < j; one match_many call per non-empty probe over non-empty j > i.
    score = np.zeros((n, n))
    per_cmp_us, weights = [], []
    for i in range(n - 1):
        cand = [j for j in range(i + 1, n) if not empty[j]]
        if not empty[i] and cand:
            t0 = time.process_time()
            out = np.asarray(match_many(templates[i], [templates[j] for j in cand]), np.float64)
            dt = time.process_time() - t0
            if out.shape != (len(cand),):
                raise invalid("match_many() result", f"shape ({len(cand)},)", out.shape)
            score[i, cand] = out
            per_cmp_us.append(dt * 1e6 / len(cand))
            weights.append(len(cand))
        if progress:
            progress("match", i + 1, n - 1)

    pairs = fvc_pairs(images)
    scores = {k: score[p[:, 0], p[:, 1]] for k, p in pairs.items()}
    m_all = compute_metrics(scores["genuine"], scores["impostor"])
    m_fvc = compute_metrics(scores["genuine"], scores["impostor_fvc"])
    return FvcResult(
        eer=m_all.eer, fmr100=m_all.fmr100, fmr1000=m_all.fmr1000, zerofmr=m_all.zerofmr,
        eer_fvc=m_fvc.eer, fmr100_fvc=m_fvc.fmr100,
        n_genuine=len(pairs["genuine"]), n_impostor=len(pairs["impostor"]),
        n_impostor_fvc=len(pairs["impostor_fvc"]), n_failed_extractions=int(empty.sum()),
        extract_ms_median=float(np.median(extract_ms)),
        prepare_ms_median=float(np.median(prepare_ms[~empty])) if (~empty).any() else 0.0,
        match_us_median=_weighted_median(np.asarray(per_cmp_us), np.asarray(weights, float)),
        names=[im.name for im in images], pairs=pairs, scores=scores, extract_ms=extract_ms,
    )
