"""Score normalisation and score-level fusion fitted on a development set.

Normalisation (Jain, Nandakumar & Ross, "Score normalization in multimodal biometric
systems", Pattern Recognition 38(12), 2005) maps each matcher's scores to a common
scale; :func:`fit_normalizer` estimates the parameters on development scores:

========== =============================================== ==============================
method     formula                                         parameters from
========== =============================================== ==============================
zscore     (s - mean) / std                                all development scores
impostor   (s - mean) / std                                impostor scores (Z-norm)
minmax     (s - min) / (max - min)                         all development scores
tanh       0.5 * (tanh(0.01 * (s - mean) / std) + 1)       genuine scores
========== =============================================== ==============================

Fusion combines ``m`` scores per comparison (several fingers of one person, or finger and
face) into one. :func:`fit_fusion` with ``method="logistic"`` fits linear logistic
regression on normalised scores with the two classes weighted equally (the prior-free
"linear fusion" of Brümmer's FoCal/BOSARIS toolkits), so that the fused score
``w . z + b`` is an estimate of the log-likelihood ratio ``log p(s | mated) / p(s | non-mated)``,
on the same scale whatever the development set's class proportions. ``method="sum"``
is the classic baseline: the sum of normalised scores (all weights 1).

The fit is Newton's method on the L2-regularised (``l2`` on the weights, not the bias)
mean cross-entropy: deterministic, a unique optimum, and no dependency beyond numpy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import BiomatchError, invalid
from .metrics import check_labels, check_scores

__all__ = ["ScoreNormalizer", "fit_normalizer", "ScoreFusion", "fit_fusion", "NORMALIZERS"]

NORMALIZERS = ("zscore", "impostor", "minmax", "tanh")


@dataclass(frozen=True)
class ScoreNormalizer:
    """An affine (or tanh) map of raw scores; immutable and thread-safe.

    Attributes
    ----------
    method : str
        One of :data:`NORMALIZERS`.
    loc, scale : float
        Location and scale (``scale > 0``).
    """

    method: str
    loc: float
    scale: float

    def __post_init__(self):
        if self.method not in NORMALIZERS:
            raise invalid("method", f"one of {NORMALIZERS}", self.method)
        if not (np.isfinite(self.loc) and np.isfinite(self.scale) and self.scale > 0):
            raise invalid("scale", "a finite scale > 0 (development scores must not all be equal)", self.scale)

    def __call__(self, scores) -> np.ndarray:
        """Normalise ``scores`` (array_like of float, any shape); returns float64 of the same shape."""
        s = np.asarray(scores, dtype=np.float64)
        if np.isnan(s).any():
            raise invalid("scores", "scores without NaN", "NaN")
        z = (s - self.loc) / self.scale
        return 0.5 * (np.tanh(0.01 * z) + 1.0) if self.method == "tanh" else z


def fit_normalizer(genuine, impostor, method: str = "impostor") -> ScoreNormalizer:
    """Estimate a :class:`ScoreNormalizer` from development scores (see the module table).

    Parameters
    ----------
    genuine, impostor : array_like of float, shape (G,) and (I,)
    method : {"zscore", "impostor", "minmax", "tanh"}

    Examples
    --------
    >>> n = fit_normalizer([4.0, 6.0], [0.0, 2.0], "minmax")
    >>> n([0.0, 3.0, 6.0]).tolist()
    [0.0, 0.5, 1.0]
    """
    g = check_scores(genuine, "genuine")
    i = check_scores(impostor, "impostor")
    if method not in NORMALIZERS:
        raise invalid("method", f"one of {NORMALIZERS}", method)
    both = np.concatenate([g, i])
    if method == "zscore":
        loc, scale = both.mean(), both.std()
    elif method == "impostor":
        loc, scale = i.mean(), i.std()
    elif method == "minmax":
        loc, scale = both.min(), both.max() - both.min()
    else:
        loc, scale = g.mean(), g.std()
    if not scale > 0:
        raise invalid(f"{'genuine' if method == 'tanh' else 'impostor' if method == 'impostor' else 'scores'}",
                      f"scores with a spread (method {method!r} divides by it)", "all equal")
    return ScoreNormalizer(method, float(loc), float(scale))


@dataclass(frozen=True)
class ScoreFusion:
    """Fused score ``sum_k w_k * norm_k(s_k) + bias``; immutable and thread-safe.

    Attributes
    ----------
    weights : tuple of float, length m
    bias : float
    normalizers : tuple of ScoreNormalizer, length m
    names : tuple of str, length m
        Names of the inputs (e.g. finger positions, ``"face"``).
    method : str
        ``"logistic"`` (the fused score estimates a log-likelihood ratio) or ``"sum"``.
    """

    weights: tuple
    bias: float
    normalizers: tuple
    names: tuple
    method: str

    def __call__(self, scores) -> np.ndarray:
        """Fuse ``scores`` (array_like of float, shape (n, m), columns as ``names``) into shape (n,)."""
        s = np.asarray(scores, dtype=np.float64)
        m = len(self.weights)
        if s.ndim != 2 or s.shape[1] != m:
            raise invalid("scores.shape", f"(n, {m}) (one column per input: {', '.join(self.names)})", s.shape)
        if not np.isfinite(s).all():
            raise invalid("scores", "finite scores (no NaN or infinity)", "a non-finite value")
        z = np.column_stack([nz(s[:, k]) for k, nz in enumerate(self.normalizers)])
        return z @ np.asarray(self.weights) + self.bias

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> "ScoreFusion":
        try:
            d = json.loads(text)
            return cls(weights=tuple(float(w) for w in d["weights"]), bias=float(d["bias"]),
                       normalizers=tuple(ScoreNormalizer(**n) for n in d["normalizers"]),
                       names=tuple(d["names"]), method=str(d["method"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise BiomatchError(f"fusion: expected the JSON written by ScoreFusion.to_json ({exc})") from exc


def _logistic_fit(z: np.ndarray, y: np.ndarray, l2: float, max_iter: int = 100) -> tuple[np.ndarray, float]:
    n, m = z.shape
    x = np.column_stack([z, np.ones(n)])
    # Class-balanced sample weights: each class carries half of the total.
    w = np.where(y, 0.5 / y.sum(), 0.5 / (~y).sum())
    reg = np.full(m + 1, l2)
    reg[-1] = 0.0
    beta = np.zeros(m + 1)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (w * (p - y)) + reg * beta
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + np.diag(reg) + 1e-12 * np.eye(m + 1)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return beta[:m], float(beta[m])


def fit_fusion(scores, labels, *, method: str = "logistic", normalize: str = "impostor", l2: float = 1e-3,
               names=None) -> ScoreFusion:
    """Fit a fusion of ``m`` scores per comparison on a development set.

    Parameters
    ----------
    scores : array_like of float, shape (n, m)
        One row per comparison, one column per matcher / finger / modality.
    labels : array_like of {0, 1}, shape (n,)
        1 for a genuine (mated) comparison.
    method : {"logistic", "sum"}
    normalize : {"impostor", "zscore", "minmax", "tanh"}
        Per-column normaliser fitted first (see :func:`fit_normalizer`).
    l2 : float
        Ridge penalty on the weights (>= 0); keeps them finite on separable data.
    names : sequence of str, optional
        Column names (default ``"s0", "s1", ...``).

    Returns
    -------
    ScoreFusion

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([1, 0], 500)
    >>> s = np.column_stack([rng.normal(2 * y, 1), rng.normal(0.5 * y, 1)])  # a strong, a weak input
    >>> f = fit_fusion(s, y, names=["index", "thumb"])
    >>> f.weights[0] > f.weights[1] > 0
    True
    """
    s = np.asarray(scores, dtype=np.float64) if not isinstance(scores, np.ndarray) else scores.astype(np.float64)
    if s.ndim != 2 or s.shape[1] < 1:
        raise invalid("scores.shape", "(n, m) with one column per input", s.shape)
    for k in range(s.shape[1]):
        check_scores(s[:, k], f"scores[:, {k}]")
    y = check_labels(labels, "labels", s.shape[0])
    if y.all() or not y.any():
        raise invalid("labels", "both genuine (1) and impostor (0) comparisons", f"only {int(y[0])}s")
    if method not in ("logistic", "sum"):
        raise invalid("method", "'logistic' or 'sum'", method)
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 >= 0:
        raise invalid("l2", "a float >= 0", l2)
    m = s.shape[1]
    names = tuple(f"s{k}" for k in range(m)) if names is None else tuple(str(n) for n in names)
    if len(names) != m:
        raise invalid("names", f"{m} names (one per column)", len(names))
    norms = tuple(fit_normalizer(s[y, k], s[~y, k], normalize) for k in range(m))
    if method == "sum":
        return ScoreFusion(tuple([1.0] * m), 0.0, norms, names, method)
    z = np.column_stack([nz(s[:, k]) for k, nz in enumerate(norms)])
    w, b = _logistic_fit(z, y, float(l2))
    return ScoreFusion(tuple(float(v) for v in w), b, norms, names, method)
