"""Memory of a shard: growable id-indexed arrays and the LRU cache of prepared templates.

Prepared templates (the matcher's cylinders, ~37 KB per finger) are derived from the store on
demand; the cache bounds what they cost in bytes, whatever the gallery size.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ..match import PreparedTemplate

__all__ = ["GrowArray", "PreparedCache"]


class GrowArray:
    """A growable numpy array indexed by a store id (ids start at 1; ``fill`` = absent).

    Sized exactly when the final size is known (``reserve``: a shard at open knows its store's
    sequences), grown by a quarter beyond the size asked for afterwards: a shard that keeps
    enrolling pays at most 25% of slack, not the 100% of doubling, for an amortised copy cost
    that stays O(1) per id.
    """
    __slots__ = ("data", "fill")

    GROWTH = 1.25

    def __init__(self, dtype, fill, width: int | None = None, size: int = 1024):
        self.fill = fill
        shape = (int(size),) if width is None else (int(size), width)
        self.data = np.full(shape, fill, dtype)

    def reserve(self, n: int) -> None:
        """Hold at least ``n`` entries, growing to exactly ``n`` (no slack)."""
        if n > len(self.data):
            self._resize(int(n))

    def ensure(self, n: int) -> None:
        """Hold at least ``n`` entries, with headroom for the ids that follow."""
        if n > len(self.data):
            self._resize(max(int(n), int(len(self.data) * self.GROWTH) + 1))

    def _resize(self, n: int) -> None:
        grown = np.full((n,) + self.data.shape[1:], self.fill, self.data.dtype)
        grown[:len(self.data)] = self.data
        self.data = grown

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


class PreparedCache:
    """A thread-safe LRU cache of prepared templates by finger id, bounded in bytes.

    Parameters
    ----------
    max_bytes : int
        Bound on ``sum(PreparedTemplate.nbytes)`` (0 disables caching).
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, fid: int):
        with self._lock:
            pt = self._items.get(fid)
            if pt is None:
                self.misses += 1
                return None
            self._items.move_to_end(fid)
            self.hits += 1
            return pt

    def put(self, fid: int, pt: PreparedTemplate) -> None:
        size = int(pt.nbytes)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(fid, None)
            if old is not None:
                self.nbytes -= int(old.nbytes)
            self._items[fid] = pt
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, gone = self._items.popitem(last=False)
                self.nbytes -= int(gone.nbytes)

    def discard(self, fids) -> None:
        with self._lock:
            for f in fids:
                pt = self._items.pop(int(f), None)
                if pt is not None:
                    self.nbytes -= int(pt.nbytes)

    def __len__(self) -> int:
        return len(self._items)

