"""FAISS candidate retrieval: per finger position, 512-bit codes in a flat binary index, every
person scored by an exhaustive pass over them.

The code stage of the gallery's two-phase search (registered as ``"faiss"``, the default for new
galleries; the router's side is :mod:`biomatch.dedup.scatter`)::

    probe fingers ──► probe_codes ──► per position, every active row: its weighted agreement with
        the probe finger (native ``code_sums``, one read of each stored code), added to its person
        ──► scan: the shard's best persons by the sum over the probe's positions
        ──► router: the top ``k_persons`` persons ──► the shard's native re-ranking + fusion

``k_persons`` is the *penetration* of the stage: ``ceil(10 / f * min(max_persons, max(min_persons,
penetration * n)))`` for a gallery of ``n`` persons and a probe of ``f`` usable fingers (see
:class:`FaissRetrievalParams`): fewer fingers make a weaker filter, so the stage widens.  A finger
whose template yields no valid code (too few minutiae) is stored but tombstoned at once, so it
contributes 0; so does a position the probe lacks or the person lacks.

Why every row of every position counts, and not only each position's nearest rows: a person
whose ten fingers are all poor (dry, worn) agrees with the probe a little on every finger and on
none strongly enough to reach a position's nearest 0.6%; summed over ten fingers the small
agreements stand out (10 scores of ~+25 against impostors' 0 +- 11 each: ~7 standard deviations
of the sum).  Measured at 1,000,000 registry-like generated enrolments (``benchmarks/dedup_scale.py``):
of the 27 mated probes the nearest-rows table lost (of 999), the sum ranks 16 within the top 100
persons; of 366 other mated probes it lost 2 against 4 (numbers in the README, Scale).

The score of a row is asymmetric (:class:`~biomatch.retrieval.codes.ProbeWeights`): the stored
code is bits, the probe keeps its projection, so the bits the probe is unsure of count less; in
the units of ``n_bits/2 - Hamming`` (equal to it when ``probe_weight_clip_sd`` is tiny).  The sum
is exact integers per row times one float32 per position, added in ascending position order, so
a person's score is the same on every kernel and whatever the shard layout.

Rows are implicit (row ``i`` of position ``p`` is the ``i``-th finger added there); the map
row -> subject key (int32) is kept beside the codes and persisted with them
(:mod:`biomatch.retrieval.code_files`).  Fingers are added in finger-id order and the store's
subject keys increase with finger ids, so a position's keys ascend: the row of a subject is found
by binary search, and a row needs no finger id (the shard derives it from the subject key and
the position, :mod:`biomatch.dedup.finger_map`).  Saved indexes are reopened memory-mapped
read-only; rows enrolled since go to FingerIndex's in-memory delta.  A saved index of another
code generation (``default_model().generation``) is discarded and rebuilt.

Thread-safety: the shard serialises every call under its lock.  Memory per ten-finger
enrolment: 10 x (64 B code + 4 B subject key + 1 bit of tombstone) = 681 B (codes mapped from
disk once saved; 800 B before the rows dropped their finger ids and int64 keys).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import canonical_checksum
from ..errors import invalid
from ..template import FINGER_POSITIONS
from . import code_files as files
from .code_files import Column
from typing import NamedTuple

from ._codes_nb import nth_largest
from .codes import default_model, finger_codes, plane_scores, probe_weights
from .finger_index import FingerIndex

_MAX_KEY = files.MAX_KEY
_BLOCK = 32_768  # keys or rows per step of verify and drop_absent (bounded temporaries)
# Persons per block of the code stage's pass (native code_sums_blocked): their sums and flags,
# 80 KB, stay in the core's L2 cache while every position's codes of the block stream past.  Ten
# positions of a 1M gallery, one thread: 45.6 ms against 60 ms position after position (AVX-512),
# 53.5 against 66 (AVX2); 8,192 to 32,768 are alike, 65,536 loses 4 ms.  The sums are the same bits.
_SUM_BLOCK_PERSONS = 16_384

__all__ = ["FaissRetrieval", "FaissRetrievalParams", "ProbeCode", "code_ranking"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class FaissRetrievalParams:
    """Tunables of the FAISS stage.

    Attributes
    ----------
    penetration : float
        Fraction of the shard's persons passed to native re-ranking.
    min_persons, max_persons : int
        Bounds of ``k_persons`` for a ten-finger probe (a probe of ``f`` fingers gets
        ``10 / f`` times more persons, so the re-ranking cost, persons x fingers, stays bounded).
        Re-ranking prepares candidate fingers from the store on a cold cache (~0.5 ms each)
        and matches them; the cascade of :class:`~biomatch.decide.DecisionParams` keeps that to
        ~3 fingers per person.  At 1,000,000 generated enrolments (1,000 mated ten-finger
        probes, 64 rows per person) the mate ranked beyond 100 persons in 0.09% of 3,300
        probes and beyond 200 in 0.03%; end to end both k = 100 and k = 200 missed 1 of 1,000
        mated probes (FNIR 0.1%, the same probe), at 0.30 s and 0.46 s median: hence the
        default ``max_persons`` = 100.  Measured on generated data (``benchmarks/dedup_scale.py``, 1,000
        mated ten-finger probes at 100,000 enrolments): the mate ranks first in the code stage
        99.9% of the time, at worst 4th — 100 persons is a 25x margin there; the margin needed
        at larger N is extrapolated in that benchmark.  Real prints need this re-measured.
        Since every person is scored on every finger (session 14), at 1,000,000 registry-like
        enrolments with k = 100: mate in the top 100 persons 99% of 100 probes, FNIR 1.9% of
        1,000 mated probes, all misses people poor on every finger; k = 300 / 1,000 confirm 2 / 4
        of those 19 at ~3x / ~10x the candidates to prepare.
    factory : str
        FAISS binary factory string of each position's index (``"BFlat"``: the codes in place,
        which the exhaustive pass reads; another factory's rows are reconstructed at every pass).
    probe_weight_clip_sd : float
        Asymmetric scoring of the scanned rows (:func:`~biomatch.retrieval.codes.probe_weights`):
        a probe bit weighs ``min(|z|, c)``, ``z`` its whitened projection in standard deviations.
        1.0: measured on 1,000 registry-like generated ten-finger probes among 20,000 persons,
        mates beyond rank 10 went from 7 to 4 and the worst rank from 713 to 291 (clip 0.5: 3 and
        536; no clip: 6 and 301); among 100,000, mates within the top 100 persons 98.4% -> 98.8%
        of 1,000; on SOCOFing's altered prints the single-finger hit rate at penetration 1e-3 rose
        from 0.629 to 0.694 (``benchmarks/retrieval.py``).  1e-6 gives plain Hamming scores.
    """

    penetration: float = 0.01
    min_persons: int = 50
    max_persons: int = 100
    factory: str = "BFlat"
    probe_weight_clip_sd: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.penetration, (int, float)) and 0 < self.penetration <= 1):
            raise invalid("penetration", "a number in (0, 1]", self.penetration)
        for name in ("min_persons", "max_persons"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise invalid(name, "an int >= 1", v)
        c = self.probe_weight_clip_sd
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < float("inf"):
            raise invalid("probe_weight_clip_sd", "a finite float > 0", c)
        if self.max_persons < self.min_persons:
            raise invalid("max_persons", f"an int >= min_persons ({self.min_persons})", self.max_persons)

    def k_persons(self, n_persons: int, n_fingers: int = 10) -> int:
        """Persons kept for re-ranking in a shard of ``n_persons`` for a probe of ``n_fingers``."""
        widen = 10 / min(10, max(1, n_fingers))
        base = min(self.max_persons, max(self.min_persons, self.penetration * n_persons))
        return int(math.ceil(widen * base))


class ProbeCode(NamedTuple):
    """One probe finger at the code stage (see :class:`~biomatch.retrieval.codes.ProbeWeights`)."""

    code: np.ndarray  # uint8 (n_bytes,): its stored-form code
    planes: np.ndarray  # uint8 (WEIGHT_PLANES, n_bytes): its per-bit weights, bit-plane by bit-plane
    total: int  # the sum of its weights
    scale: np.float32  # n_bits / 2 / total

    def scores(self, codes: np.ndarray) -> np.ndarray:
        """``float32 (m,)`` scores of stored ``codes`` (uint8 (m, n_bytes)), as the exhaustive pass gives them."""
        return plane_scores(codes, self.code, self.planes, self.total, self.scale)


class FaissRetrieval:
    """Per-position FAISS binary indexes of finger codes (see the module docstring).

    Parameters
    ----------
    params : FaissRetrievalParams, optional
    model : EncodeModel, optional
        Defaults to :func:`biomatch.retrieval.codes.default_model`; its generation is checked on load.
    """

    name = "faiss"

    def __init__(self, params: FaissRetrievalParams | None = None, model=None):
        self.params = params or FaissRetrievalParams()
        self.model = model or default_model()
        self.generation = self.model.generation
        self.n_bits = int(self.model.params.n_bits)
        self.indexed_upto = 0
        self.removals_upto = 0
        self._index: dict = {}  # position -> FingerIndex
        self._keys: dict[int, Column] = {}  # position -> subject key (int32) per row, ascending
        self._dirty = False
        self.rejected = None  # why the saved files were not used at load (None: used, or none saved)
        self._loaded_version = None  # the saved version folder this state was loaded from
        self._sums = self._seen = None  # person_sums' buffers, reused between calls

    # ---- writes -----------------------------------------------------------------------------
    def _position(self, position: int):
        if position not in self._index:
            self._index[position] = FingerIndex(self.n_bits, self.params.factory)
            self._keys[position] = Column()
        return self._index[position]

    def add(self, position, finger_ids, templates, subject_keys=None) -> None:
        """Index fingers of one position, in finger-id order; ``subject_keys`` groups rows by
        person (default: the ids).  The ids only advance :attr:`indexed_upto`."""
        fids = np.asarray(finger_ids, np.int64)
        if len(fids) == 0:
            return
        keys = fids if subject_keys is None else np.asarray(subject_keys, np.int64)
        if len(templates) != len(fids) or len(keys) != len(fids):
            raise invalid("templates", f"{len(fids)} templates and subject keys", (len(templates), len(keys)))
        codes, valid = finger_codes(list(templates), self.model, return_valid=True)
        self.add_codes(position, fids, codes, valid, keys)

    def add_codes(self, position, finger_ids, codes, valid, subject_keys) -> None:
        """As :meth:`add`, with the codes already computed (bulk loading computes them for many
        positions at once, in threads, before its transaction).

        Parameters
        ----------
        codes : uint8 (n, n_bits / 8)
            :func:`~biomatch.retrieval.codes.finger_codes` of this retrieval's model.
        valid : bool (n,)
        subject_keys : int (n,)
            Strictly increasing, beyond the last key of the position, in ``0 .. 2^31 - 1``
            (the binary search of :meth:`remove` relies on it).
        """
        fids = np.asarray(finger_ids, np.int64)
        keys = np.asarray(subject_keys, np.int64)
        if len(fids) == 0:
            return
        if len(codes) != len(fids) or len(valid) != len(fids) or len(keys) != len(fids):
            raise invalid("codes", f"{len(fids)} codes, flags and subject keys", (len(codes), len(valid), len(keys)))
        col = self._keys.get(int(position))
        last = int(col.view()[-1]) if col is not None and len(col) else -1
        if keys[0] <= last or keys[-1] > _MAX_KEY or (np.diff(keys) <= 0).any():
            raise invalid("subject_keys", f"keys increasing beyond {last} (the position's last), at most {_MAX_KEY}",
                          keys[:4].tolist())
        index = self._position(int(position))
        first = index.add(codes)
        if not valid.all():  # no code: never a candidate through this position
            index.remove(first + np.flatnonzero(~valid))
        self._keys[int(position)].extend(keys)
        self.indexed_upto = max(self.indexed_upto, int(fids.max()))
        self._dirty = True

    def _locate(self, position: int, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(hit, rows)``: which of ``keys`` have a row at ``position`` (bool (m,)) and those rows
        (binary search in the position's ascending key column)."""
        col = self._keys[position].view()
        k = np.asarray(keys, np.int64)
        ok = (k >= 0) & (k <= _MAX_KEY)
        at = np.searchsorted(col, np.where(ok, k, 0).astype(np.int32))  # the column's dtype: no copy of it
        hit = ok & (at < len(col))
        hit[hit] = col[at[hit]] == k[hit]
        return hit, at[hit]

    def _rows_of(self, position: int, keys: np.ndarray) -> np.ndarray:
        """Rows of ``keys`` at ``position`` (keys without a row there are left out)."""
        return self._locate(position, keys)[1]

    def remove(self, subject_keys, positions=None) -> int:
        """Tombstone the rows of ``subject_keys`` (the fingers of removed subjects): at every
        position, or at ``positions[i]`` for ``subject_keys[i]``.  Returns the rows newly removed."""
        keys = np.asarray(subject_keys, np.int64).ravel()
        pos = None if positions is None else np.asarray(positions, np.int64).ravel()
        new = 0
        for p, index in self._index.items():
            rows = self._rows_of(p, keys if pos is None else keys[pos == p])
            if len(rows):
                new += index.remove(rows)
        self._dirty |= new > 0
        return new

    def drop_absent(self, present) -> int:
        """Tombstone every active row whose subject is not enrolled (``present(keys)`` -> bool):
        at open, the rows of subjects removed before the saved files' removals mark, or before
        this process saw their fingers.  Returns the rows newly removed."""
        new = 0
        for p, index in self._index.items():
            k = self._keys[p].view()
            for i in range(0, len(k), _BLOCK):
                gone = np.flatnonzero(~present(k[i:i + _BLOCK]))
                if len(gone):
                    new += index.remove(gone + i)
        self._dirty |= new > 0
        return new

    # ---- the two-phase search across shards (the router's side: biomatch.dedup.scatter) ---------
    @property
    def n_persons(self) -> int:
        """Persons in the shard, estimated as the most populated position's active rows."""
        return max((ix.n_active for ix in self._index.values()), default=0)

    def position_counts(self) -> dict:
        """``{position: active rows}`` of this index (summed over shards, the gallery's person count)."""
        return {p: int(ix.n_active) for p, ix in self._index.items() if ix.n_active}

    def probe_codes(self, probe: dict) -> dict:
        """``{position: ProbeCode}`` of the probe fingers that yield a valid code (all positions)."""
        positions = sorted(probe)
        if not positions:
            return {}
        w = probe_weights([probe[p] for p in positions], self.model, clip=self.params.probe_weight_clip_sd)
        return {p: ProbeCode(w.codes[i], w.planes[i], int(w.totals[i]), w.scales[i])
                for i, p in enumerate(positions) if w.valid[i]}

    def person_sums(self, codes: dict) -> tuple[np.ndarray, np.ndarray]:
        """Every person's code score: the exhaustive pass over the probe's positions.

        Parameters
        ----------
        codes : dict position -> ProbeCode
            :meth:`probe_codes`.

        Returns
        -------
        sums : float32 (K,)
            Indexed by subject key (``K`` = the largest key + 1): the sum over the probe's
            positions of the score of the person's active row there (0 where none); ``-inf``
            for a key with no active row at any of them.
        seen : uint8 (K,)
            1 for the keys with an active row at one of the probe's positions.

        Both are buffers of this object, valid until its next call (copy what is kept).
        """
        n_keys = 1 + max((int(col.view()[-1]) for col in self._keys.values() if len(col)), default=-1)
        if self._sums is None or len(self._sums) != n_keys:
            self._sums, self._seen = np.empty(n_keys, np.float32), np.empty(n_keys, np.uint8)
        # Reused between calls (the shard serialises them): a fresh 5 MB per search at 1M cost ~4 ms
        # of page faults; filling the mapped pages again is ~0.5 ms.
        sums, seen = self._sums, self._seen
        sums.fill(-np.inf)
        seen.fill(0)
        passes = []
        for p in sorted(codes):  # one order of the float additions, whatever the shard layout
            index = self._index.get(p)
            if index is None or not index.n_active:
                continue
            pc = codes[p]
            passes += index.score_passes(pc.code, pc.planes, pc.total, pc.scale, self._keys[p].view())
        from .. import _native as native  # the compiled core, loaded on first use

        # Persons in blocks: every position's keys increase (add() refuses others, and a shard's
        # open rebuilds rows that disagree with its store); were they not, each row would still be
        # added once, only the order of one person's float additions could differ.
        native.code_sums_blocked(passes, sums, seen, _SUM_BLOCK_PERSONS)
        return sums, seen

    def scan(self, codes: dict, n_best: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Phase 1a: the ``n_best`` persons with the highest summed code score (:meth:`person_sums`).

        Returns
        -------
        keys : int64 (m,)
            ``m >= min(n_best, n_scored)``: every person tied with the ``n_best``-th is included.
        scores : float64 (m,)
        n_scored : int
            Persons with an active row at one of the probe's positions.
        """
        if isinstance(n_best, bool) or not isinstance(n_best, (int, np.integer)) or n_best < 0:
            raise invalid("n_best", "an int >= 0", n_best)
        sums, seen = self.person_sums(codes)
        n_scored = int(np.count_nonzero(seen))
        if n_scored == 0 or n_best < 1:
            return np.zeros(0, np.int64), np.zeros(0), n_scored
        if n_best < n_scored:  # the persons never seen are -inf: below every scored one
            keys = np.flatnonzero(sums >= nth_largest(sums, int(n_best)))
        else:
            keys = np.flatnonzero(seen)
        return keys.astype(np.int64), sums[keys].astype(np.float64), n_scored

    def person_table(self, codes: dict, keys: np.ndarray) -> np.ndarray:
        """Per-position code scores of persons ``keys``: ``float64 (m, 11)``, column p the score
        of the person's active row at position p (as in :meth:`person_sums`), 0 where the person
        or the probe has none; column 0 unused.  The cascade matches the best columns first."""
        keys = np.asarray(keys, np.int64)
        table = np.zeros((len(keys), 11))
        for p, pc in codes.items():
            index = self._index.get(p)
            if index is None or not len(keys):
                continue
            hit, rows = self._locate(p, keys)
            if len(rows):
                live = ~index.is_removed(rows)
                where = np.flatnonzero(hit)[live]
                table[where, p] = pc.scores(index.codes(rows[live]))
        return table

    @property
    def nbytes(self) -> int:
        """Memory of codes (mapped or not), subject keys, tombstones and the code stage's buffers."""
        buffers = 0 if self._sums is None else self._sums.nbytes + self._seen.nbytes
        return buffers + sum(ix.ntotal * ix.n_bytes + ix.tombstone_bytes + self._keys[p].nbytes
                             for p, ix in self._index.items())

    # ---- persistence ------------------------------------------------------------------------
    def save(self, folder, cipher=None) -> None:
        """Write the indexes as a new version, swap the manifest, delete older versions.

        ``cipher``: an encrypted gallery's key ring; the files are then sealed (see
        :func:`~biomatch.retrieval.code_files.write_version`)."""
        folder = Path(folder)
        if not self._dirty:
            return
        folder.mkdir(mode=0o700, exist_ok=True)
        with files.locked(folder, exclusive=True):
            old = files.read_manifest(folder)
            if old is not None and self._loaded_version is not None and old.get("current") == self._loaded_version \
                    and old.get("checksum") == canonical_checksum(old) \
                    and (old.get("indexed_upto"), old.get("removals_upto")) == (self.indexed_upto, self.removals_upto) \
                    and bool(old.get("sealed", False)) == (cipher is not None):
                self._dirty = False
                return  # the files this state was loaded from, unchanged since (any other saved
                # state is replaced: its marks may not be trusted, and a lag is caught up at open)
            header = {"generation": self.generation, "n_bits": self.n_bits, "factory": self.params.factory,
                      "indexed_upto": self.indexed_upto, "removals_upto": self.removals_upto}
            version = files.write_version(folder, header, self._index, self._keys, cipher)
        self._loaded_version = version
        self._dirty = False

    def load(self, folder, cipher=None) -> None:
        """Map a saved index read-only (rows added later go to the delta); nothing saved: empty.

        ``cipher``: an encrypted gallery's key ring; its sealed files are decrypted into memory."""
        folder = Path(folder)
        if not folder.is_dir():
            return
        with files.locked(folder, exclusive=False):
            m = files.read_manifest(folder)
            if m is None:
                return
            if m.get("generation") != self.generation or m.get("n_bits") != self.n_bits:
                log.warning("index %s: code generation %s, expected %s; rebuilding from the store",
                            folder, m.get("generation"), self.generation)
                return
            try:
                index, keys = files.read_version(folder, m, cipher)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - derived data: whatever is wrong, rebuild it
                log.warning("index %s: damaged or inconsistent files (%s); rebuilding from the store", folder, exc)
                self.rejected = str(exc)
                return
        self._index, self._keys = index, keys
        self.indexed_upto = int(m["indexed_upto"])
        self.removals_upto = int(m["removals_upto"])
        converted = m["version"] != files.FORMAT_VERSION  # an older format: re-saved in this one
        self._loaded_version = None if converted else m["current"]
        self._dirty = converted

    def verify(self, expected, present, store_seqs: dict, pending_removals: int) -> list:
        """Disagreements between the loaded index and the store (empty: the index holds exactly
        the store's fingers with ids up to ``indexed_upto``, at their positions and subjects,
        besides rows of removed subjects).

        Parameters
        ----------
        expected : callable (position, upto, lo, hi) -> int array
            The store's enrolled subjects with keys in ``[lo, hi)`` and a finger at ``position``
            whose id is at most ``upto``, ascending (:meth:`~biomatch.dedup.finger_map.FingerMap.keys_at`).
        present : callable (keys) -> bool array
            Which subject keys are enrolled in the store.
        store_seqs : dict
            :meth:`Store.sequences` (the last finger id, subject key and removal number ever assigned).
        pending_removals : int
            Fingers whose removal the store logged after ``removals_upto`` (applied later).

        Notes
        -----
        O(rows) numpy, paid at open only, in blocks of 32,768 keys: temporaries of a few hundred
        KB, where whole columns (8 MB per position at 1M) left ~6 MiB of heap behind after the
        open.  A row is its subject key at its position; keys are
        never reused, and a subject holds one finger per position, so the rows of enrolled
        subjects must equal ``expected`` key for key.  The rows of subjects the store no longer
        holds are tombstoned by :meth:`drop_absent`; those still active can be at most the
        fingers whose removal is pending.
        """
        problems = []
        if self.indexed_upto > store_seqs["fingers"]:
            problems.append(f"indexed_upto {self.indexed_upto} is beyond the store's last finger id "
                            f"{store_seqs['fingers']}")
        if self.removals_upto > store_seqs["removals"]:
            problems.append(f"removals_upto {self.removals_upto} is beyond the store's last removal "
                            f"{store_seqs['removals']}")
        if problems:
            return problems
        n_keys = store_seqs["subjects"]
        for p in FINGER_POSITIONS:
            index = self._index.get(p)
            k = self._keys[p].view() if index is not None else np.zeros(0, np.int32)
            if len(k) and (k[0] < 1 or k[-1] > n_keys
                           or any((np.diff(k[i:i + _BLOCK + 1]) <= 0).any() for i in range(0, len(k), _BLOCK))):
                problems.append(f"position {p}: subject keys not increasing within 1..{n_keys}")
                continue
            live_rows = want_rows = active = 0
            differ = False
            for lo in range(1, n_keys + 1, _BLOCK):  # keys [lo, hi) against their rows (keys ascend)
                hi = min(lo + _BLOCK, n_keys + 1)
                a, b = np.searchsorted(k, np.int32(lo)), np.searchsorted(k, np.int32(hi))
                rows = k[a:b]
                live = present(rows)
                want = expected(p, self.indexed_upto, lo, hi)
                live_rows, want_rows = live_rows + int(live.sum()), want_rows + len(want)
                differ = differ or not np.array_equal(rows[live], want)
                gone = np.flatnonzero(~live) + a
                if len(gone):
                    active += int(len(gone) - index.is_removed(gone).sum())
            if differ and index is None:
                problems.append(f"position {p}: missing, the store holds fingers there up to id {self.indexed_upto}")
            elif differ:
                problems.append(f"position {p}: {live_rows} rows of the store's subjects, the store holds "
                                f"{want_rows} up to finger id {self.indexed_upto}"
                                + ("" if live_rows != want_rows else " (other subjects)"))
            if active > pending_removals:
                problems.append(f"position {p}: {active} rows of removed subjects are not tombstoned, "
                                f"{pending_removals} removals pending")
        return problems


def code_ranking(retrieval: FaissRetrieval, probe: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """The code stage of a one-shard gallery, for diagnostics: every person's summed code score
    (:meth:`FaissRetrieval.person_sums`, as the search scores) and the ``k_persons`` the stage
    keeps.  Used by the demo and benchmarks to tell whether a mate survived the code stage.

    Returns
    -------
    keys : int64 (m,) sorted
        Every person with an active row at one of the probe's positions.
    scores : float64 (m,)
    k_persons : int
    """
    counts = retrieval.position_counts()
    codes = retrieval.probe_codes({p: t for p, t in probe.items() if p in counts})
    k = retrieval.params.k_persons(max(counts.values(), default=0), len(codes))
    sums, seen = retrieval.person_sums(codes)
    keys = np.flatnonzero(seen)
    return keys.astype(np.int64), sums[keys].astype(np.float64), k
