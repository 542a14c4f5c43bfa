"""The generated training set of the finger-code model, and the command that rebuilds the shipped model.

``python -m biomatch.datasets.code_training [--out PATH] [--params JSON]`` trains
:func:`biomatch.retrieval.training.train_model` on :func:`training_templates` and writes
``biomatch/data/encode_model.npz`` (the default).  Generated fingers with seeds from
:data:`TRAINING_SEED_BASE` on are used for training only; benchmarks use seeds below it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from ..params import from_json
from ..retrieval.codes import DEFAULT_MODEL_PATH, EncodeParams
from ..retrieval.training import train_model
from .synthetic import template_impressions

__all__ = ["TRAINING_SEED_BASE", "training_templates", "main"]

TRAINING_SEED_BASE = 900_000_000
"""Generated fingers with seeds from here on train the model; benchmarks use seeds below it."""


def training_templates(params: EncodeParams | None = None) -> list:
    """``params.training_fingers`` generated fingers (seeds from :data:`TRAINING_SEED_BASE`) x
    ``params.training_impressions`` templates each."""
    p = EncodeParams() if params is None else params
    return [t for f in range(p.training_fingers)
            for t in template_impressions(TRAINING_SEED_BASE + f, p.training_impressions)]


def main(argv: Sequence[str] | None = None) -> int:
    """Rebuild the shipped model (or write one elsewhere with ``--out``)."""
    ap = argparse.ArgumentParser(prog="python -m biomatch.datasets.code_training")
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    ap.add_argument("--params", help="EncodeParams as JSON (biomatch.params.to_json)")
    args = ap.parse_args(argv)
    params = from_json(args.params, EncodeParams) if args.params else EncodeParams()
    model = train_model(training_templates(params), params)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    sys.stdout.write(json.dumps({"path": str(args.out), "generation": model.generation}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
