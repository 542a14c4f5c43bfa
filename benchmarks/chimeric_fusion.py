"""Chimeric multimodal fusion: one fingerprint + one face per person, FNIR at fixed FPIR per modality.

    .venv/bin/python benchmarks/chimeric_fusion.py [--datasets ../shared/datasets] [--seed 0]

A chimeric set pairs each fingerprint identity with a face identity of another dataset
(standard practice in multimodal research when no true multimodal set exists): the 40
fingers of FVC2002 DB1-4_B (8 impressions each) with the 40 people of ORL (10 images each),
paired at random (seeded).  Gallery: impression 1 of each finger + image 1 of its face.
Probes: impressions 2-8 with images 2-8 -> 280 mated searches; the same probes with their
mate left out of the gallery -> 280 non-mated searches (leave-one-out).  Scores:
- fingerprint: the native matcher's score as evidence, -log10 FMR (biomatch.decide.finger_evidence)
- face: the raw cosine (uncapped, the face's own best ranking)
- fused: biomatch.decide.fuse_evidence(finger evidence + face evidence, 2) — exactly what
  the gallery computes for a candidate with one finger and a face (face evidence capped at
  DecisionParams.face_evidence_max_decades).
FNIR at FPIR (open set, biomatch.evaluate.identification): the mate must rank first and
reach the threshold; FPIR counts non-mated searches whose top candidate reaches it.  With
280 non-mated searches the smallest FPIR resolved is 1/280 = 0.36% ("FPIR 0" below means no
non-mated search reached the threshold).

Measured 2026-11-29 (seed 0): see the README's results table (printed as a Markdown table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

DPI = {"db1_b": 500, "db2_b": 569, "db3_b": 500, "db4_b": 500}


def _outcomes(scores: np.ndarray, mate: np.ndarray):
    """Mated and leave-one-out non-mated outcomes from a (probes x gallery) score matrix."""
    from biomatch.evaluate.identification import SearchOutcomes

    idx = np.arange(len(mate))
    ms = scores[idx, mate]
    rank = (scores >= ms[:, None]).sum(axis=1)
    others = scores.copy()
    others[idx, mate] = -np.inf
    return SearchOutcomes(rank.astype(np.int64), ms, others.max(axis=1), scores.shape[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe-blur-px", type=float, nargs="*", default=[0.0, 2.5],
                    help="Gaussian blur (sigma, pixels) of the probe face images: 0 = as captured; "
                         "2.5 degrades SFace to ~4%% FNMR at its FMR-1e-4 cosine (a poor live capture "
                         "against a clean enrolment photo)")
    args = ap.parse_args()
    from face_chimeric_data import _orl_files, orl_templates, pair_identities

    from biomatch import decide
    from biomatch.evaluate.identification import fnir_at_fpir, rank_k
    from biomatch.extract import extract
    from biomatch.match import FingerprintMatcher, prepare

    fvc = args.datasets / "fvc2002"
    if not fvc.is_dir() or not (args.datasets / "faces" / "orl").is_dir():
        print(f"needs {fvc} and {args.datasets / 'faces' / 'orl'}", file=sys.stderr)
        return 2
    fingers = {}  # "db1_b/101" -> [PreparedTemplate x 8]
    for db, dpi in DPI.items():
        for f in sorted((fvc / db).glob("*_*.tif")):
            name, imp = f.stem.split("_")
            fingers.setdefault(f"{db}/{name}", {})[int(imp)] = prepare(extract(str(f), dpi))
        print(f"extracted {db}", file=sys.stderr, flush=True)
    faces = orl_templates(args.datasets / "faces" / "orl")
    ids = sorted(fingers)
    pairs = pair_identities(ids, faces, seed=args.seed)
    files = dict(_orl_files(args.datasets / "faces" / "orl"))
    gal_f = [fingers[i][1] for i in ids]
    gal_c = np.stack([faces[pairs[i]][0].embedding for i in ids])
    probe_f, mate = [], []
    for j, i in enumerate(ids):
        for imp in range(2, 9):
            probe_f.append(fingers[i][imp])
            mate.append(j)
    mate = np.asarray(mate)
    fs = np.stack([FingerprintMatcher(p).match_many(gal_f) for p in probe_f]).astype(np.float64)
    dp = decide.DecisionParams()
    f_ev = decide.finger_evidence(fs, dp)
    print(f"chimeric FVC2002 DB1-4_B x ORL: {len(ids)} persons, {len(mate)} mated + {len(mate)} non-mated "
          f"searches, seed {args.seed}")
    print("| probe faces | modality | rank-1 | FNIR at FPIR 1% | FNIR at FPIR 0 (< 1/280) |")
    print("|---|---|---|---|---|")
    for blur in args.probe_blur_px:
        probe_c = [_probe_face(files[pairs[i]][imp - 1], faces[pairs[i]][imp - 1], blur)
                   for i in ids for imp in range(2, 9)]
        cs = np.stack(probe_c) @ gal_c.T
        fused = decide.fuse_evidence((f_ev + decide.face_evidence(cs, dp)).ravel(), 2, dp).reshape(fs.shape)
        rows = {"fingerprint (1 finger)": fs, "face": cs.astype(np.float64), "fused (finger + face)": fused}
        label = "as captured" if blur == 0 else f"blurred {blur:g} px"
        for name, s in rows.items():
            o = _outcomes(s, mate)
            print(f"| {label} | {name} | {rank_k(o, 1):.2%} | {fnir_at_fpir(o, 0.01):.2%} | "
                  f"{fnir_at_fpir(o, 0.0):.2%} |")
    return 0


def _probe_face(path: Path, clean, blur_px: float) -> np.ndarray:
    """The probe's embedding: the cached clean template, or the image blurred and re-encoded."""
    import cv2

    from biomatch.errors import BiomatchError
    from biomatch.face import encode_face

    if blur_px == 0:
        return clean.embedding
    img = cv2.GaussianBlur(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (0, 0), blur_px)
    try:
        return encode_face(img).embedding
    except BiomatchError:  # no face found any more: the probe has no face evidence
        return np.zeros_like(clean.embedding)


if __name__ == "__main__":
    sys.exit(main())
