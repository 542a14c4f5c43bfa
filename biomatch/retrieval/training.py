"""Training of the finger-code model: PCA whitening and an ITQ rotation (offline, seconds).

The runtime encoder (:mod:`biomatch.retrieval.codes`) only applies a trained
:class:`~biomatch.retrieval.codes.EncodeModel`; this module builds one from templates given
by the caller.  The shipped model is trained on generated fingers
(:mod:`biomatch.datasets.code_training`, which also rebuilds the package file), so that no
evaluation data is ever seen in training.

Thread-safety: :func:`train_model` is pure (its random state comes from the parameters).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..errors import invalid
from ..template import Template
from .codes import EncodeModel, EncodeParams, check_templates, pair_histograms

__all__ = ["train_model"]

log = logging.getLogger(__name__)


def _pca(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    cov = np.cov((x - mean).T.astype(np.float64))
    w, vecs = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1][:dims]
    return mean.astype(np.float32), vecs[:, order].astype(np.float32)


def _itq(v: np.ndarray, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """ITQ rotation (Gong & Lazebnik, CVPR 2011): minimise the quantisation loss of sign(v R)."""
    d = v.shape[1]
    r, _ = np.linalg.qr(rng.standard_normal((d, d)))
    for _ in range(iterations):
        b = np.sign(v @ r)
        u, _, wt = np.linalg.svd(b.T @ v)
        r = (u @ wt).T
    return r


def train_model(templates: Sequence[Template], params: EncodeParams | None = None) -> EncodeModel:
    """Train an :class:`~biomatch.retrieval.codes.EncodeModel`.

    Parameters
    ----------
    templates : sequence of Template
        Training templates (at least ``2 * n_bits`` usable ones).  Never train on evaluation
        data; :func:`biomatch.datasets.code_training.training_templates` gives the generated
        set the shipped model is trained on.
    params : EncodeParams, optional

    Raises
    ------
    InvalidInputError
        Bad parameters, or too few usable templates.
    """
    p = EncodeParams() if params is None else params
    if not isinstance(p, EncodeParams):
        raise invalid("params", "an EncodeParams", type(p).__name__)
    rng = np.random.default_rng(p.seed)
    ts = check_templates(templates, "templates")
    h, valid = pair_histograms(ts, p)
    h = h[valid]
    if len(h) < 2 * p.n_bits:
        raise invalid("templates", f"at least {2 * p.n_bits} usable templates", len(h))
    mean, basis = _pca(h, p.n_bits)
    z = (h - mean) @ basis
    scale = z.std(0)
    basis = basis / np.maximum(scale, 1e-12)  # whitening: every bit gets equal weight
    z = (h - mean) @ basis
    rotation = _itq(z, p.itq_iterations, rng)
    model = EncodeModel(p, mean, (basis @ rotation).astype(np.float32))
    log.info("trained encode model %s on %d templates", model.generation, len(ts))
    return model
