"""A shard's map between subject keys and finger ids, in 6 bytes per subject.

The store gives the fingers of one subject consecutive ids in ascending position order, and
subject keys increase with finger ids (one transaction per subject or batch, writers serialised,
both ids AUTOINCREMENT; :meth:`~biomatch.dedup.store.Store.insert` and
:meth:`~biomatch.dedup.store.Store.insert_batch` refuse anything else).  A subject is then
described by its first finger id (uint32) and the mask of its positions (uint16)::

    finger id of the subject's position p   first + number of its positions below p
    subject key of finger id f               the last key whose first id is <= f (binary search)
    position of finger id f                  the (f - first)-th position of the subject's mask

The former maps (finger id -> subject key, position; subject key -> eleven finger ids) cost
178 B per ten-finger subject; this costs 6.

A removed subject keeps its first id and its mask (the finger ids the store's removal log
names still resolve to it) with its ``PRESENT`` bit cleared.  Keys this map never saw (subjects
removed before they were folded in) get the first id of the next key and an empty mask, so the
first ids stay sorted and no finger id resolves to them.

Thread-safety: none; the shard calls it under its lock.  Memory: 6 B per subject key ever
assigned (removed ones included), sized exactly at open, grown by 25% beyond that.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShardFullError, invalid
from .cache import GrowArray
from .store import MAX_FINGER_ID, MAX_SUBJECT_KEY

__all__ = ["FingerMap", "MAX_SUBJECT_KEY", "MAX_FINGER_ID"]

PRESENT = 1 << 15
"""Mask bit of a subject that is enrolled (cleared when it is removed)."""
POSITIONS = (1 << 10) - 1
"""Mask bits of the positions: bit ``p - 1`` for ISO position ``p``."""

_POPCOUNT = np.array([bin(m).count("1") for m in range(1 << 10)], np.int64)
_NTH = np.zeros((1 << 10, 16), np.int64)  # position of rank r in a mask (0: none)
for _m in range(1 << 10):
    _ps = [p for p in range(1, 11) if _m >> (p - 1) & 1]
    _NTH[_m, :len(_ps)] = _ps


class FingerMap:
    """Subject key <-> finger ids of one shard (see the module docstring).

    Parameters
    ----------
    n_keys : int
        Subject keys expected (the store's sequence at open): the arrays are sized for exactly
        these, so a shard holds no slack after opening.
    """

    def __init__(self, n_keys: int = 0):
        size = max(int(n_keys), 0) + 1  # key 0 is never assigned
        self._first = GrowArray(np.uint32, 0, size=size)
        self._mask = GrowArray(np.uint16, 0, size=size)
        self.max_key = 0  # the largest key folded in
        self.last_finger = 0  # the largest finger id folded in
        self.n_present = 0  # subjects enrolled

    @property
    def nbytes(self) -> int:
        return self._first.nbytes + self._mask.nbytes

    # ---- folding in ----------------------------------------------------------------------------
    def add(self, fids, keys, positions) -> None:
        """Fold in fingers ``(id, subject key, position)`` committed after :attr:`last_finger`, in id order.

        A subject may arrive in parts (the store is read in chunks): a batch may continue the
        last subject folded in.

        Raises
        ------
        InvalidInputError
            The fingers break the store's order (ids not increasing; keys decreasing; a
            subject's ids not consecutive or its positions not ascending).  From the store,
            that is damage (the shard says so).
        ShardFullError
            An id beyond :data:`MAX_SUBJECT_KEY` or :data:`MAX_FINGER_ID`.
        """
        f = np.asarray(fids, np.int64)
        k = np.asarray(keys, np.int64)
        p = np.asarray(positions, np.int64)
        n = len(f)
        if n == 0:
            return
        if f[0] <= self.last_finger or (np.diff(f) <= 0).any():
            at = 0 if f[0] <= self.last_finger else int(np.flatnonzero(np.diff(f) <= 0)[0]) + 1
            raise invalid("fids", f"finger ids increasing beyond {self.last_finger}", int(f[at]))
        if k[0] < max(self.max_key, 1) or (np.diff(k) < 0).any():
            at = 0 if k[0] < max(self.max_key, 1) else int(np.flatnonzero(np.diff(k) < 0)[0]) + 1
            raise invalid("keys", f"subject keys increasing with finger ids (from {self.max_key})",
                          f"key {int(k[at])} at finger id {int(f[at])}")
        if (p < 1).any() or (p > 10).any():
            raise invalid("positions", "positions 1-10", int(p[(p < 1) | (p > 10)][0]))
        if f[-1] > MAX_FINGER_ID or k[-1] > MAX_SUBJECT_KEY:
            raise ShardFullError(f"finger id {int(f[-1])} or subject key {int(k[-1])}: beyond what a shard "
                                 f"addresses ({MAX_FINGER_ID}, {MAX_SUBJECT_KEY})")
        starts = np.flatnonzero(np.r_[True, np.diff(k) != 0])
        group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
        offset = np.arange(n) - starts[group]
        bits = np.left_shift(1, p - 1)
        gmask = np.bitwise_or.reduceat(bits, starts)
        gkeys = k[starts]
        gfirst = f[starts]
        cont = bool(gkeys[0] == self.max_key)  # continues the last subject folded in
        if cont:
            old = int(self._mask.data[self.max_key])
            had = old & POSITIONS
            low_new = int(gmask[0]) & -int(gmask[0])
            if not old & PRESENT or low_new <= had \
                    or int(f[0]) != int(self._first.data[self.max_key]) + int(_POPCOUNT[had]):
                raise invalid("fids", f"the fingers of subject key {self.max_key} on consecutive ids in "
                                      f"position order", f"finger id {int(f[0])} at position {int(p[0])}")
        if (f - gfirst[group] != offset).any():
            at = int(np.flatnonzero(f - gfirst[group] != offset)[0])
            raise invalid("fids", f"the fingers of subject key {int(k[at])} on consecutive ids",
                          f"finger id {int(f[at])}")
        inside = np.r_[False, np.diff(k) == 0]  # rows that follow a row of the same subject
        if (inside[1:] & (np.diff(p) <= 0)).any():
            at = int(np.flatnonzero(inside[1:] & (np.diff(p) <= 0))[0]) + 1
            raise invalid("positions", f"the positions of subject key {int(k[at])} ascending with their ids",
                          f"position {int(p[at])} at finger id {int(f[at])}")
        if cont:
            self._mask.data[self.max_key] |= np.uint16(gmask[0])
            gkeys, gfirst, gmask = gkeys[1:], gfirst[1:], gmask[1:]
        if len(gkeys):
            lo, hi = self.max_key + 1, int(gkeys[-1])
            self._first.ensure(hi + 1)
            self._mask.ensure(hi + 1)
            # keys never seen (removed before folding) take the next key's first id: sorted firsts
            seg = np.full(hi - lo + 1, MAX_FINGER_ID + 1, np.int64)
            seg[gkeys - lo] = gfirst
            self._first.data[lo:hi + 1] = np.minimum.accumulate(seg[::-1])[::-1]
            self._mask.data[lo:hi + 1] = 0
            self._mask.data[gkeys] = (gmask | PRESENT).astype(np.uint16)
            self.n_present += len(gkeys)
            self.max_key = hi
        self.last_finger = int(f[-1])

    def remove(self, fids) -> np.ndarray:
        """Mark the subjects of finger ids ``fids`` removed; returns their keys (those enrolled
        until now; ids this map does not resolve are ignored: never folded in)."""
        keys, _ = self.locate(fids)
        keys = np.unique(keys[keys > 0])
        keys = keys[(self._mask.data[keys] & PRESENT) != 0]
        self._mask.data[keys] &= np.uint16(~PRESENT & 0xFFFF)
        self.n_present -= len(keys)
        return keys

    # ---- reads ---------------------------------------------------------------------------------
    def locate(self, fids) -> tuple[np.ndarray, np.ndarray]:
        """``(subject keys, positions)`` of finger ids (int64; 0 where an id resolves to no finger
        this map folded in).  Removed subjects' fingers resolve too."""
        f = np.asarray(fids, np.int64).ravel()
        keys = np.zeros(len(f), np.int64)
        pos = np.zeros(len(f), np.int64)
        ok = (f >= 1) & (f <= self.last_finger)
        if not ok.any():
            return keys, pos
        q = f[ok]
        # the same dtype on both sides: searchsorted would otherwise copy the whole array
        k = np.searchsorted(self._first.data[1:self.max_key + 1], q.astype(np.uint32), side="right")
        rank = q - self._first.data[k].astype(np.int64)
        m = self._mask.data[k].astype(np.int64) & POSITIONS
        good = (k > 0) & (rank >= 0) & (rank < _POPCOUNT[m])
        keys[np.flatnonzero(ok)[good]] = k[good]
        pos[np.flatnonzero(ok)[good]] = _NTH[m[good], rank[good]]
        return keys, pos

    def present(self, keys) -> np.ndarray:
        """bool: which ``keys`` are enrolled subjects."""
        k = np.asarray(keys)
        if k.dtype.kind not in "iu":
            k = k.astype(np.int64)
        inside = (k >= 1) & (k <= self.max_key)
        if inside.all():  # the common case (a key column at open): no copies of the keys
            return (self._mask.data[k] & PRESENT) != 0
        out = np.zeros(k.shape, bool)
        out[inside] = (self._mask.data[k[inside]] & PRESENT) != 0
        return out

    def present_keys(self) -> np.ndarray:
        """Every enrolled subject's key, ascending (int64)."""
        return np.flatnonzero(self._mask.data[1:self.max_key + 1] & PRESENT) + 1

    def positions(self, key: int) -> tuple:
        """Positions of an enrolled subject, ascending (empty when ``key`` is not enrolled)."""
        if not 1 <= key <= self.max_key or not self._mask.data[key] & PRESENT:
            return ()
        m = int(self._mask.data[key])
        return tuple(q for q in range(1, 11) if m >> (q - 1) & 1)

    def finger_ids(self, keys) -> np.ndarray:
        """Every finger id the subjects ``keys`` were enrolled with (removed ones too), flat."""
        k = np.asarray(keys, np.int64)
        k = k[(k >= 1) & (k <= self.max_key)]
        counts = _POPCOUNT[self._mask.data[k].astype(np.int64) & POSITIONS]
        starts = np.repeat(self._first.data[k].astype(np.int64), counts)
        return starts + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))

    def finger_table(self, keys) -> np.ndarray:
        """int64 (m, 11): the finger id of each enrolled subject of ``keys`` per position (column
        ``p``; 0 where it has none, and on every column of a key that is not enrolled)."""
        k = np.asarray(keys, np.int64)
        table = np.zeros((len(k), 11), np.int64)
        live = self.present(k)
        m = np.zeros(len(k), np.int64)
        m[live] = self._mask.data[k[live]].astype(np.int64) & POSITIONS
        first = np.zeros(len(k), np.int64)
        first[live] = self._first.data[k[live]]
        for p in range(1, 11):
            bit = 1 << (p - 1)
            has = (m & bit) != 0
            table[has, p] = first[has] + _POPCOUNT[m[has] & (bit - 1)]
        return table

    def keys_at(self, position: int, upto: int, lo: int = 1, hi: int | None = None) -> np.ndarray:
        """Enrolled subjects' keys in ``[lo, hi)`` (ascending, int64) with a finger at
        ``position`` whose id is at most ``upto``: the rows a code index of that position must
        hold for them."""
        lo = max(int(lo), 1)
        hi = self.max_key + 1 if hi is None else min(int(hi), self.max_key + 1)
        if hi <= lo:
            return np.zeros(0, np.int64)
        m = self._mask.data[lo:hi]
        want = PRESENT | (1 << (position - 1))
        sel = np.flatnonzero((m & want) == want)
        if upto >= self.last_finger:  # every finger folded in is below the mark
            return np.add(sel, lo, out=sel)
        below = m[sel].astype(np.int64) & ((1 << (position - 1)) - 1)  # positions before it
        fid = self._first.data[lo:hi][sel].astype(np.int64) + _POPCOUNT[below]
        return sel[fid <= upto] + lo
