"""A bounded big-endian byte reader: every length is checked against what remains first.

Shared by the image codec that parses its own headers (:mod:`biomatch.imaging.wsq`) and every
template codec (:mod:`biomatch.formats`), hence its place beside ``errors``.

Parsers never allocate from a length field they have not checked against the input size,
so a corrupt 1 GB length in a 100-byte file is refused before anything is allocated.
"""

from __future__ import annotations

from .errors import FormatError

__all__ = ["Reader"]


class Reader:
    """Sequential reader over ``data[start:end]``; errors name ``record`` and absolute offsets.

    Not thread-safe (it has a cursor); cheap to create (no copy of ``data``).
    """

    __slots__ = ("data", "pos", "end", "record")

    def __init__(self, data: bytes, record: str, start: int = 0, end: int | None = None):
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end
        self.record = record

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def fail(self, message: str, offset: int | None = None) -> FormatError:
        return FormatError(f"{self.record}: {message}", self.pos if offset is None else offset)

    def need(self, n: int, what: str) -> None:
        if n < 0 or n > self.end - self.pos:
            raise self.fail(f"{what}: expected {n} bytes, only {max(self.end - self.pos, 0)} left (truncated)")

    def u8(self, what: str) -> int:
        self.need(1, what)
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self, what: str) -> int:
        self.need(2, what)
        p = self.pos
        self.pos += 2
        return (self.data[p] << 8) | self.data[p + 1]

    def u32(self, what: str) -> int:
        self.need(4, what)
        p = self.pos
        self.pos += 4
        return int.from_bytes(self.data[p:p + 4], "big")

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def skip(self, n: int, what: str) -> None:
        self.need(n, what)
        self.pos += n

    def sub(self, n: int, what: str, record: str | None = None) -> "Reader":
        """A reader over the next ``n`` bytes (checked), advancing this one past them."""
        self.need(n, what)
        r = Reader(self.data, record or self.record, self.pos, self.pos + n)
        self.pos += n
        return r
