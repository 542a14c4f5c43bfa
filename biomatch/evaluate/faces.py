"""Verification of the face encoder on a folder with one subfolder per identity.

Protocol: every image is encoded once; genuine scores are all pairs of images of one
identity, impostor scores all pairs of images of different identities (cosine similarity).
Images where no single face is found (no face, several faces, unusable image) count as
failures to detect and take part in no pair. Timings are wall-clock per image with OpenCV
limited to one thread (``cv2.setNumThreads(1)``) for the duration of the run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .metrics import eer, fnmr_at_fmr
from ..face.align import align_face
from ..face.detect import detect_faces, select_face, to_bgr
from ..face.embed import embed_aligned
from ..face.errors import FaceError
from ..face.params import DEFAULT, FaceParams

__all__ = ["COSINE_THRESHOLD", "IMAGE_SUFFIXES", "FaceEvaluation", "run_faces"]

log = logging.getLogger(__name__)

COSINE_THRESHOLD = 0.363
"""Operating threshold on cosine similarity published with SFace by the OpenCV Zoo demo."""

IMAGE_SUFFIXES = {".pgm", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class FaceEvaluation:
    """Scores and timings of :func:`run_faces`."""

    folder: Path
    names: list = field(default_factory=list)          # "identity/file" of each encoded image
    labels: np.ndarray = None                           # identity index per encoded image
    embeddings: np.ndarray = None                       # (n, 128) float32
    failures: list = field(default_factory=list)        # (name, reason)
    detect_ms: list = field(default_factory=list)
    embed_ms: list = field(default_factory=list)
    threshold: float = COSINE_THRESHOLD

    def pairs(self):
        """Genuine scores, impostor scores and the (i, j) pairs of each (i < j)."""
        n = len(self.names)
        s = self.embeddings @ self.embeddings.T if n else np.zeros((0, 0), np.float32)
        i, j = np.triu_indices(n, 1)
        mated = self.labels[i] == self.labels[j]
        sc = s[i, j].astype(np.float64)
        return sc[mated], sc[~mated], (i[mated], j[mated]), (i[~mated], j[~mated])

    def misses(self) -> list[dict]:
        """Mated pairs below and non-mated pairs at or above :attr:`threshold`."""
        g, im, (gi, gj), (ii, ij) = self.pairs()
        out = [{"kind": "false_non_match", "a": self.names[a], "b": self.names[b], "score": round(float(x), 4)}
               for a, b, x in zip(gi, gj, g) if x < self.threshold]
        out += [{"kind": "false_match", "a": self.names[a], "b": self.names[b], "score": round(float(x), 4)}
                for a, b, x in zip(ii, ij, im) if x >= self.threshold]
        return out

    def summary(self) -> dict:
        g, im, _, _ = self.pairs()
        if len(g) == 0 or len(im) == 0:
            raise DatasetError(f"folder {str(self.folder)!r}: expected mated and non-mated pairs, got "
                               f"{len(g)} and {len(im)} after {len(self.failures)} failures to detect")
        misses = self.misses()
        return {
            "eer": eer(g, im),
            "fmr100": fnmr_at_fmr(g, im, 0.01),
            "fmr1000": fnmr_at_fmr(g, im, 0.001),
            "n_genuine": int(len(g)),
            "n_impostor": int(len(im)),
            "failed_to_detect": len(self.failures),
            "embed_ms_median": float(np.median(self.embed_ms)),
            "detect_ms_median": float(np.median(self.detect_ms)),
            "n_images": len(self.names) + len(self.failures),
            "threshold": self.threshold,
            "n_misses": len(misses),
            "misses": misses,
            "failures": [{"image": n, "reason": r} for n, r in self.failures],
        }


def _identity_folders(folder: Path) -> list[tuple[str, list[Path]]]:
    if not folder.is_dir():
        raise DatasetError(f"folder: expected a folder with one subfolder per identity, got {str(folder)!r}")
    out = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out.append((sub.name, files))
    if len(out) < 2:
        raise DatasetError(f"folder {str(folder)!r}: expected at least 2 identity subfolders holding images "
                           f"({', '.join(sorted(IMAGE_SUFFIXES))}), found {len(out)}")
    return out


def run_faces(folder, params: FaceParams = DEFAULT) -> FaceEvaluation:
    """Encode every image of ``folder`` (one subfolder per identity) and keep the embeddings."""
    import cv2

    folder = Path(folder)
    ids = _identity_folders(folder)
    ev = FaceEvaluation(folder=folder)
    labels, embs = [], []
    old_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for label, (ident, files) in enumerate(ids):
            for path in files:
                name = f"{ident}/{path.name}"
                t0 = time.perf_counter()
                try:
                    bgr = to_bgr(path, params)
                    face = select_face(detect_faces(bgr, params), params)
                except FaceError as exc:
                    log.info("%s: %s", name, exc)
                    ev.failures.append((name, f"{type(exc).__name__}: {exc}"))
                    continue
                t1 = time.perf_counter()
                embs.append(embed_aligned(align_face(bgr, face.landmarks)))
                t2 = time.perf_counter()
                ev.detect_ms.append(1e3 * (t1 - t0))
                ev.embed_ms.append(1e3 * (t2 - t1))
                ev.names.append(name)
                labels.append(label)
    finally:
        cv2.setNumThreads(old_threads)
    ev.labels = np.asarray(labels, np.int64)
    ev.embeddings = np.asarray(embs, np.float32).reshape(-1, 128)
    return ev
