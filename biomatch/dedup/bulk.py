"""Bulk loading: a trusted backlog of templates into a gallery, in batches, WITHOUT dedup.

Pipeline of one batch (:func:`load`)::

    records ──► check (usable fingers, quality, generation) ──► serialise (BMT1) + finger codes
        (all positions of the batch at once, in threads)        ── one batch ahead, in a thread ──
    ──► write lock ──► per shard: one transaction (ids assigned up front, executemany), commit
        (fsync), watermark ──► index append per position ──► progress(done)
        ──► every ``checkpoint_s``: the index files saved

The batch after the current one is checked, serialised and coded while the current one is
written, so the store's fsync and SQLite's B-tree work overlap the code kernel (which releases
the GIL).  A batch is acknowledged (``progress``) only after every shard it touches committed;
a kill loses at most the batches not yet acknowledged, never part of a subject (each subject's
rows are in one shard's transaction).  With ``skip_enrolled`` the subjects already in the
gallery are dropped under the write lock, so a re-run after a kill enrols each subject exactly
once.

Thread-safety: :func:`load` holds the gallery's write lock for each batch's write only; other
threads and processes may search between batches.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Callable, Iterable

import numpy as np

from ..errors import invalid
from ..formats import encode
from ..retrieval.codes import default_model, finger_codes
from .protocol import BulkInsert, EncodedRows, Present
from .records import Enrolment

__all__ = ["load", "encode_rows", "enrolled_among", "DEFAULT_CHECKPOINT_S"]

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT_S = 300.0
"""Seconds between index saves during a load: a kill then re-codes at most this much work at the
next open (the store is the truth either way)."""


def encode_rows(rows: list, with_codes: bool = False, n_threads: int = 1) -> EncodedRows:
    """:class:`~biomatch.dedup.protocol.EncodedRows` of ``(subject_id, {position: Template},
    metadata_json, face or None)`` rows: BMT1 blobs and, if ``with_codes``, the finger codes of
    the shipped model (``n_threads`` threads)."""
    subjects, fingers, templates = [], [], []
    for i, (sid, ts, meta, face) in enumerate(rows):
        subjects.append((sid, meta, None if face is None else np.asarray(face, np.float32).tobytes()))
        for p, t in sorted(ts.items()):
            fingers.append((i, p, encode(t), len(t)))
            templates.append(t)
    if not with_codes:
        return EncodedRows(subjects, fingers)
    model = default_model()
    codes, valid = finger_codes(templates, model, return_valid=True, n_threads=n_threads)
    return EncodedRows(subjects, fingers, codes, valid, model.generation)


def enrolled_among(gallery, subject_ids: list) -> set:
    """The ids among ``subject_ids`` already enrolled in ``gallery`` (one query per 900 ids and
    shard), so that a resumed load reads and codes only what is left."""
    gallery._check_open()
    found: set = set()
    for shard in gallery._shards:  # every epoch's shard may hold old subjects
        found.update(shard.present(Present(list(subject_ids))))
    return found


def _subset(enc: EncodedRows, keep: np.ndarray) -> EncodedRows:
    """The rows of the subjects ``keep`` (bool per subject), renumbered."""
    new_index = np.cumsum(keep) - 1
    subj = np.fromiter((f[0] for f in enc.fingers), np.int64, len(enc.fingers))
    rows = np.flatnonzero(keep[subj]) if len(subj) else np.zeros(0, np.int64)
    fingers = [(int(new_index[enc.fingers[r][0]]),) + tuple(enc.fingers[r][1:]) for r in rows]
    return EncodedRows([s for s, k in zip(enc.subjects, keep) if k], fingers,
                       None if enc.codes is None else enc.codes[rows],
                       None if enc.valid is None else enc.valid[rows], enc.code_generation)


class _Batch:
    """One checked and encoded batch: the rows, their encoding, one template per distinct
    extraction parameter hash (re-checked under the lock once the generation is fixed)."""

    __slots__ = ("rows", "encoded", "hashes")

    def __init__(self, rows: list, encoded: EncodedRows, hashes: dict):
        self.rows, self.encoded, self.hashes = rows, encoded, hashes


def _prepare(gallery, records: list, with_codes: bool, n_threads: int) -> _Batch:
    rows, hashes = [], {}
    for rec in records:
        if not isinstance(rec, Enrolment):
            raise invalid("record", "a biomatch Enrolment", type(rec).__name__)
        name = f"record {rec.subject_id!r} fingers"
        usable = gallery._usable(rec.fingers, name)
        gallery._check_quality(usable, name)
        t = next(iter(usable.values()))
        hashes.setdefault(t.params_hash, (name, t))
        rows.append((rec.subject_id, usable, rec.metadata_json, rec.face))
    return _Batch(rows, encode_rows(rows, with_codes, n_threads), hashes)


def _batches(records: Iterable, size: int):
    batch = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _ahead(gallery, records: Iterable, size: int, with_codes: bool, n_threads: int):
    """Prepared batches, the next one made in a thread while the caller writes the current one.

    An exception of the preparation (a bad record) is raised to the caller in order, after the
    batches before it; the thread stops when the caller does (the queue holds one batch)."""
    out: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for recs in _batches(records, size):
                if stop.is_set():
                    return
                out.put(_prepare(gallery, recs, with_codes, n_threads))
            out.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            out.put(exc)

    thread = threading.Thread(target=work, name="biomatch-bulk-prepare", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting to put
            try:
                out.get(timeout=0.05)
            except queue.Empty:
                pass


def _write(gallery, batch: _Batch, skip_enrolled: bool) -> tuple[int, int]:
    """Write one batch under the gallery's write lock: ``(inserted, skipped)``."""
    enc = batch.encoded
    ids = [s[0] for s in enc.subjects]
    with gallery._writer():
        gallery._fix_template_generation(next(iter(batch.hashes)))
        for name, t in batch.hashes.values():  # every generation of the batch against the fixed one
            gallery._usable({1: t}, name)
        keep = np.ones(len(ids), bool)
        if skip_enrolled:
            present = enrolled_among(gallery, ids)
            keep = np.fromiter((sid not in present for sid in ids), bool, len(ids))
        else:
            gallery._check_not_enrolled_earlier(ids)
        shards: dict[int, tuple] = {}
        for i in np.flatnonzero(keep):
            shard = gallery._route(ids[i])
            shards.setdefault(id(shard), (shard, []))[1].append(i)
        inserted = 0
        for shard, members in shards.values():
            mask = np.zeros(len(ids), bool)
            mask[members] = True
            part = enc if mask.all() else _subset(enc, mask)
            rows = [batch.rows[i] for i in members]
            inserted += shard.bulk_insert(BulkInsert(rows, part))
    return inserted, int((~keep).sum())


def load(gallery, records: Iterable[Enrolment], batch_size: int = 5000, progress: Callable | None = None,
         skip_enrolled: bool = False, n_threads: int | None = None,
         checkpoint_s: float = DEFAULT_CHECKPOINT_S) -> int:
    """Bulk-load ``records`` into ``gallery`` (see the module docstring); the subjects inserted.

    Parameters
    ----------
    gallery : Gallery
    records : iterable of Enrolment
    batch_size : int
        Subjects per transaction (a kill loses at most one batch; larger batches amortise the
        fsync and the per-call overheads).
    progress : callable(done, total), optional
        Called after each acknowledged batch; ``done`` counts inserted and skipped subjects.
    skip_enrolled : bool
        Drop subjects already enrolled (resume); otherwise one fails its whole batch with
        :class:`~biomatch.dedup.errors.DuplicateSubjectError`.
    n_threads : int, optional
        Threads of the code kernel (default: the CPUs, at most 8).
    checkpoint_s : float
        Seconds between index saves (and one at the end).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise invalid("batch_size", "an int >= 1", batch_size)
    if n_threads is None:
        n_threads = max(1, min(8, os.cpu_count() or 1))
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or not 1 <= n_threads <= 256:
        raise invalid("n_threads", "an int in [1, 256]", n_threads)
    total = len(records) if hasattr(records, "__len__") else None
    with_codes = gallery._manifest["retrieval"]["kind"] == "faiss"
    done = inserted = 0
    saved_at = time.monotonic()
    for batch in _ahead(gallery, records, batch_size, with_codes, n_threads):
        n, skipped = _write(gallery, batch, skip_enrolled)
        inserted += n
        done += n + skipped
        if progress is not None:
            progress(done, total)
        if time.monotonic() - saved_at > checkpoint_s:
            _checkpoint(gallery)
            saved_at = time.monotonic()
    if inserted:
        _checkpoint(gallery)
    return inserted


def _checkpoint(gallery) -> None:
    t0 = time.perf_counter()
    for shard in gallery._shards:
        save = getattr(shard, "checkpoint", None)  # local shards; a remote one saves on its node
        if save is not None:
            save()
    log.info("gallery %s: index saved in %.1f s", gallery.path, time.perf_counter() - t0)
