"""The data of ``biomatch demo dedup``: SOCOFing or generated identities, and their cached templates.

SOCOFing (``DATASETS/socofing``): the real prints of subjects 1-200 are enrolled at 165 dpi; the
stream holds one altered-hard print per finger of subjects 1-200 (the first of ``_CR``,
``_Obl``, ``_Zcut`` available: returning people) and likewise of subjects 201-300 (new
people). Otherwise generated identities
(:func:`biomatch.datasets.synthetic.template_impressions`): 2,000 enrolled, 200 returning with
another impression, 200 new.

Extracting the ~5,000 SOCOFing images takes minutes, so their templates are cached under the
demo's output folder in a plain-array ``.npz`` (never a pickle: a replaced file cannot run code),
validated on every read and rebuilt when damaged.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import os
import random
import time
from pathlib import Path

import numpy as np

from .._io import write_file_atomic
from ..datasets.synthetic import template_impressions
from ..errors import FormatError, ResolutionError
from ..formats import decode, encode
from ..template import FINGER_POSITIONS
from ._common import Progress

__all__ = ["SOCO_DPI", "socofing_position", "socofing", "generated"]

log = logging.getLogger(__name__)

_HANDS = {"Right": 0, "Left": 5}
_FINGERS = {"thumb": 1, "index": 2, "middle": 3, "ring": 4, "little": 5}
SOCO_DPI = 165.0
_CACHE_FORMAT = "biomatch-demo-templates-1"


def socofing_position(name: str) -> tuple[int, int] | None:
    """``(subject, ISO position)`` of a SOCOFing file name, or None."""
    stem = Path(name).stem
    head, _, rest = stem.partition("__")
    parts = rest.split("_")
    if not head.isdigit() or len(parts) < 4 or parts[1] not in _HANDS or parts[2] not in _FINGERS:
        return None
    return int(head), _HANDS[parts[1]] + _FINGERS[parts[2]]


def _extract_one(job):
    from ..extract import extract

    path, dpi = job
    try:
        try:
            return path, encode(extract(path, dpi=dpi))
        except ResolutionError:  # SOCOFing's 241x298 scans are not at the set's 165 dpi: as a
            # registry would, take the resolution the ridge period shows rather than lose the print
            return path, encode(extract(path, dpi="auto"))
    except Exception:  # a print that fails to extract is simply absent
        return path, None


def _write_cache(f: Path, paths: list[str], raw: dict) -> None:
    """Save ``{path: native template bytes or None}`` as one ``.npz`` of plain arrays (no pickle),
    mode 0600 (templates are personal data), atomically.

    Arrays: ``format`` (str), ``paths`` (str, n), ``present`` (bool, n: extraction succeeded),
    ``offsets`` (int64, n + 1) into ``blobs`` (uint8: the concatenated ``BMT1`` templates).
    """
    blobs = [raw.get(p) or b"" for p in paths]
    offsets = np.zeros(len(paths) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    arrays = {"format": np.array(_CACHE_FORMAT), "paths": np.array(paths, dtype=str),
              "present": np.array([raw.get(p) is not None for p in paths], bool), "offsets": offsets,
              "blobs": np.frombuffer(b"".join(blobs), np.uint8)}

    def write(tmp: Path) -> None:
        os.chmod(tmp, 0o600)  # even if a stale temporary file of another mode was there
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a name
            np.savez(fh, **arrays)

    f.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_file_atomic(f, write)


def _read_cache(f: Path, paths: list[str]) -> dict:
    """The templates of a cache file written by :func:`_write_cache` for exactly ``paths``.

    Raises
    ------
    Exception
        Any failure (not an npz of plain arrays, another format or path list, a template
        whose CRC or content fails :func:`biomatch.formats.decode`): the caller rebuilds.
    """
    with np.load(f, allow_pickle=False) as z:  # never unpickle: a replaced file cannot run code
        if set(z.files) != {"format", "paths", "present", "offsets", "blobs"}:
            raise FormatError(f"cache: expected the arrays of {_CACHE_FORMAT}, got {sorted(z.files)}")
        fmt, stored, present, offsets, blobs = (z[k] for k in ("format", "paths", "present", "offsets", "blobs"))
    n = len(paths)
    if fmt.shape != () or str(fmt) != _CACHE_FORMAT or stored.dtype.kind != "U" or stored.tolist() != paths \
            or present.dtype != bool or present.shape != (n,) or offsets.dtype != np.int64 \
            or offsets.shape != (n + 1,) or blobs.dtype != np.uint8 or blobs.ndim != 1 or offsets[0] != 0 \
            or np.any(np.diff(offsets) < 0) or offsets[-1] != blobs.size:
        raise FormatError(f"cache: not a {_CACHE_FORMAT} file for these {n} images")
    data = blobs.tobytes()
    return {p: decode(data[offsets[i]:offsets[i + 1]]) for i, p in enumerate(paths) if present[i]}


def _extract_all(paths: list[str], dpi: float, cache: Path, quiet: bool) -> dict:
    """Templates by path, extracted on 2 processes, cached in ``cache`` (see :func:`_write_cache`).

    The cache file is named by a hash of the paths and the dpi.  A file that cannot be read or
    validated (damaged, replaced) is discarded with a warning and rebuilt.
    """
    paths = list(paths)
    # "resolution-checked": templates of mis-scaled images changed when the resolution check came
    key = hashlib.sha1("\n".join(paths).encode("utf-8", "surrogateescape") + str(dpi).encode()
                       + b"resolution-checked").hexdigest()[:12]
    f = cache / f"templates_{key}.npz"
    legacy = cache / f"templates_{key}.pkl"
    if legacy.exists():  # pickles were never safe to load (and were world-readable): drop them
        log.warning("removing the old pickle cache %s (not read: a pickle can run code)", legacy)
        try:
            legacy.unlink()
        except OSError as exc:
            log.warning("cannot remove %s: %s", legacy, exc.strerror or exc)
    if f.exists():
        try:
            templates = _read_cache(f, paths)
        except Exception as exc:  # any damage means: rebuild (the file is never trusted)
            log.warning("template cache %s is unreadable or invalid (%s: %s): rebuilding it",
                        f, type(exc).__name__, exc)
        else:
            print(f"templates: {len(paths)} read from the cache {f}")
            return templates
    bar = Progress(len(paths), "extract", quiet)
    raw = {}
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(min(2, os.cpu_count() or 1)) as pool:
        for i, (p, blob) in enumerate(pool.imap_unordered(_extract_one, [(p, dpi) for p in paths], chunksize=8)):
            raw[p] = blob
            bar.update(i + 1)
    print(f"templates: {len(raw)} extracted in {time.perf_counter() - t0:.0f} s on 2 processes")
    try:
        _write_cache(f, paths, raw)
    except OSError as exc:  # a cache that cannot be written costs the next run time, not this one
        log.warning("cannot write the template cache %s: %s", f, exc.strerror or exc)
    return {p: decode(b) for p, b in raw.items() if b is not None}


def socofing(root: Path, cache: Path, quiet: bool):
    """``(description, enrol, stream)`` of SOCOFing under ``root``: lists of ``(subject id,
    {position: Template})``."""
    real = {}
    for f in sorted((root / "real").iterdir()):
        sp = socofing_position(f.name)
        if sp and 1 <= sp[0] <= 300:
            real[sp] = str(f)
    alt = {}
    for suffix in ("CR", "Obl", "Zcut"):
        for f in sorted((root / "altered_hard").glob(f"*_{suffix}.png")):
            sp = socofing_position(f.name)
            if sp and 1 <= sp[0] <= 300 and sp not in alt:
                alt[sp] = str(f)
    # Only the real prints of enrolled subjects are needed: new people arrive altered too.
    needed = [v for (s, _), v in real.items() if s <= 200]
    ts = _extract_all(sorted(needed) + sorted(alt.values()), SOCO_DPI, cache, quiet)

    def fingers(table, subject):
        return {p: ts[table[(subject, p)]] for p in FINGER_POSITIONS if (subject, p) in table and table[(subject, p)] in ts}

    enrol = [(f"S{s:03d}", fingers(real, s)) for s in range(1, 201)]
    stream = [(f"S{s:03d}", fingers(alt, s)) for s in range(1, 201)] + \
             [(f"S{s:03d}", fingers(alt, s)) for s in range(201, 301)]
    return "SOCOFing: real prints of subjects 1-200 enrolled; altered-hard prints of 1-200 (returning) and " \
           "201-300 (new) searched", \
        enrol, stream


def background_person(i: int) -> dict:
    """Generated person ``i`` of a demo's background population (seeds apart from :func:`generated`'s)."""
    return {p: template_impressions(90_000_000 + i * 16 + p, 1)[0] for p in FINGER_POSITIONS}


def generated(n_enrol=2000, n_return=200, n_new=200):
    """``(description, enrol, stream)`` of generated identities, as :func:`socofing`."""
    def person(i, imp):
        return {p: template_impressions(10_000 + i * 16 + p, imp + 1)[imp] for p in FINGER_POSITIONS}

    enrol = [(f"G{i:05d}", person(i, 0)) for i in range(n_enrol)]
    rng = random.Random(7)
    back = rng.sample(range(n_enrol), n_return)
    stream = [(f"G{i:05d}", person(i, 1)) for i in back] + \
             [(f"G{i:05d}", person(i, 0)) for i in range(n_enrol, n_enrol + n_new)]
    return f"generated identities: {n_enrol} enrolled, {n_return} returning, {n_new} new", enrol, stream
