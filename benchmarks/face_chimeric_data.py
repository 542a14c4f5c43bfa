"""ORL face templates per identity, for chimeric face + fingerprint benchmarks.

A chimeric multimodal set pairs each fingerprint identity with a face identity of another
dataset (standard practice when no real multimodal set is at hand).  This module encodes
the ORL faces (AT&T, 40 identities x 10 grey 92x112 images) once with the biomatch face
encoder and caches the result as BMF1 template bytes in a pickle (default in ``/tmp``),
keyed by the list of image files (name, size, mtime), the :class:`FaceParams` hash and the
model hash, so a stale cache is rebuilt rather than used.

Usage::

    from benchmarks.face_chimeric_data import orl_templates, pair_identities
    faces = orl_templates()                  # {"s1": [FaceTemplate, ...], ...}, ~20-40 s cold, <1 s cached
    pairs = pair_identities(finger_ids, faces, seed=0)   # {finger_id: "s17", ...}

or ``python benchmarks/face_chimeric_data.py`` to build the cache and print a summary.
Images where no single face is found are left out of the lists and logged (ORL: none with
the default parameters).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ORL = Path(os.environ.get("BIOMATCH_DATASETS", REPO.parent / "shared" / "datasets")) / "faces" / "orl"
DEFAULT_CACHE = Path("/tmp/biomatch_orl_templates.pkl")

log = logging.getLogger(__name__)

__all__ = ["orl_templates", "pair_identities", "DEFAULT_ORL", "DEFAULT_CACHE"]


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _orl_files(root: Path) -> list[tuple[str, list[Path]]]:
    ids = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: _natural(p.name))
    return [(d.name, sorted((f for f in d.iterdir() if f.suffix.lower() == ".pgm"), key=lambda f: _natural(f.name)))
            for d in ids]


def _cache_key(files: list[tuple[str, list[Path]]], params) -> str:
    from biomatch.face.nets import MODEL_SHA256, RECOGNIZER_FILE

    h = hashlib.sha256()
    h.update(params.hash().encode())
    h.update(MODEL_SHA256[RECOGNIZER_FILE].encode())
    for ident, paths in files:
        for p in paths:
            st = p.stat()
            h.update(f"{ident}/{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def orl_templates(root: str | Path = DEFAULT_ORL, cache: str | Path | None = DEFAULT_CACHE, params=None) -> dict:
    """Face templates of ORL, per identity, in the dataset's order (``s1``, ``s2``, ... ``s40``).

    Parameters
    ----------
    root : path
        The ORL folder (one subfolder ``sN`` per identity, ``1.pgm`` ... ``10.pgm``).
    cache : path or None
        Pickle of the encoded templates; rebuilt when the images, parameters or model
        changed; ``None`` disables caching.
    params : FaceParams or None
        Encoder parameters (default :data:`biomatch.face.params.DEFAULT`).

    Returns
    -------
    dict of str -> list of FaceTemplate
        Identity folder name -> templates of its images (failures to detect left out).
    """
    import cv2

    from biomatch.errors import DatasetError
    from biomatch.face import FaceError, decode, encode, encode_face
    from biomatch.face.params import DEFAULT

    params = DEFAULT if params is None else params
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"root: expected the ORL folder, got {str(root)!r} (not a folder)")
    files = _orl_files(root)
    key = _cache_key(files, params)
    if cache is not None and Path(cache).is_file():
        try:
            with open(cache, "rb") as fh:
                stored = pickle.load(fh)
            if stored.get("key") == key:
                return {ident: [decode(b) for b in blobs] for ident, blobs in stored["templates"].items()}
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, AttributeError) as exc:
            log.warning("cache %s unreadable (%s): re-encoding", cache, exc)
    old = cv2.getNumThreads()
    cv2.setNumThreads(1)
    out: dict = {}
    try:
        for ident, paths in files:
            out[ident] = []
            for p in paths:
                try:
                    out[ident].append(encode_face(p, params))
                except FaceError as exc:
                    log.warning("%s/%s: %s: %s", ident, p.name, type(exc).__name__, exc)
    finally:
        cv2.setNumThreads(old)
    if cache is not None:
        from biomatch._io import write_private_atomic

        blob = pickle.dumps({"key": key, "templates": {i: [encode(t) for t in ts] for i, ts in out.items()}})
        write_private_atomic(Path(cache), blob)
    return out


def pair_identities(finger_ids, faces: dict, seed: int = 0) -> dict:
    """Pair each fingerprint identity with a distinct face identity (seeded random, no reuse).

    Raises
    ------
    InvalidInputError
        More fingerprint identities than face identities.
    """
    from biomatch.errors import invalid

    finger_ids = list(finger_ids)
    names = sorted(faces, key=_natural)
    if len(finger_ids) > len(names):
        raise invalid("finger_ids", f"at most {len(names)} identities (one face identity each)", len(finger_ids))
    perm = np.random.default_rng(seed).permutation(len(names))
    return {f: names[i] for f, i in zip(finger_ids, perm)}


if __name__ == "__main__":
    import time

    logging.basicConfig(level=logging.INFO)
    t0 = time.perf_counter()
    faces = orl_templates(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_ORL)
    n = sum(len(v) for v in faces.values())
    print(f"{len(faces)} identities, {n} templates in {time.perf_counter() - t0:.1f} s (cache {DEFAULT_CACHE})")
