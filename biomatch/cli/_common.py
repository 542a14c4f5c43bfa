"""What every ``biomatch`` command shares: exit codes, argument types and the progress bar.

The argument types turn a bad value into an argparse usage error (exit code 2) that names the
expected and the actual value, before any work starts. :class:`Progress` is the one progress
display of the command line: every long command (extraction, evaluation, enrolment, search,
the demo) reports through it, so they all look and log alike.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

__all__ = ["EXIT_OK", "EXIT_INTERNAL", "EXIT_INPUT", "EXIT_INTERRUPTED", "Progress", "dpi", "dpi_or_auto",
           "int_in", "positive_int", "non_negative_int", "rate", "list_of", "peer", "command_line"]

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


# --------------------------------------------------------------------------- argument types

def dpi(text: str) -> float:
    """A positive finite resolution in dots per inch."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of dots per inch, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite dpi, got {text!r}")
    return value


def dpi_or_auto(text: str):
    """A dpi, or ``"auto"``: estimated from the ridge period (:mod:`biomatch.extract.resolution`)."""
    return "auto" if text.strip().lower() == "auto" else dpi(text)


def int_in(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high] (no upper bound when ``high`` is None)."""
    expected = (f"an integer in [{low}, {high}]" if high is not None
                else "a positive integer" if low == 1 else f"an integer >= {low}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = int_in(1)
non_negative_int = int_in(0)


def rate(text: str) -> float:
    """A rate in [0, 1], e.g. a target FMR."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate in [0, 1] such as 1e-4, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a rate in [0, 1] such as 1e-4, got {text!r}")
    return value


def list_of(kind, what: str):
    """An argument type for comma-separated values of ``kind`` (at least one)."""
    def parse(text: str):
        try:
            values = [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        return values

    return parse


def peer(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` of a peer system's scores."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name.strip(), Path(path.strip())


def command_line() -> str:
    """The command as typed (for reports), or ``""`` when not run as ``biomatch``."""
    return "biomatch " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("biomatch") else ""


# --------------------------------------------------------------------------- progress

class Progress:
    """Progress of one counted task on stderr.

    On a terminal, one line redrawn at most five times a second: ``LABEL [####   ] done/total
    rate/s`` and the elapsed time at the end; in a log (stderr not a terminal), one line per
    tenth of the work; nothing when ``quiet``.

    Parameters
    ----------
    total : int
        Units of work (at least 1 is assumed).
    label : str
        What is counted, printed first (``"enrol"``, ``"db1_b: extract"``).
    quiet : bool
        Print nothing.
    stream : file, optional
        Where to write (default: ``sys.stderr`` at construction).
    """

    def __init__(self, total: int, label: str, quiet: bool = False, width: int = 30, stream=None):
        self.total, self.label, self.quiet, self.width = max(total, 1), label, quiet, width
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._logged = -1

    def update(self, done: int) -> None:
        """Record that ``done`` units are finished."""
        if self.quiet:
            return
        now = time.perf_counter()
        if not self._tty:
            tenth = 10 * done // self.total
            if tenth > self._logged:
                self._logged = tenth
                rate = done / max(now - self.t0, 1e-9)
                self.stream.write(f"{self.label} {done}/{self.total} ({rate:.1f}/s)\n")
            return
        if done < self.total and now - self._last < 0.2:
            return
        self._last = now
        frac = done / self.total
        bar = "#" * int(frac * self.width)
        rate = done / max(now - self.t0, 1e-9)
        self.stream.write(f"\r{self.label} [{bar:<{self.width}}] {done}/{self.total} {rate:.1f}/s")
        if done >= self.total:
            self.stream.write(f" {now - self.t0:.1f} s\n")
        self.stream.flush()

    @classmethod
    def stages(cls, prefix: str, quiet: bool = False, stream=None):
        """A ``progress(stage, done, total)`` callback (as :func:`biomatch.evaluate.fvc.run_fvc` and
        :func:`biomatch.datasets.synthetic.write_fvc` call it): one bar per stage, labelled
        ``prefix + stage``, or None when ``quiet``."""
        if quiet:
            return None
        current: dict = {}

        def progress(stage: str, done: int, total: int) -> None:
            bar = current.get("bar")
            if bar is None or current.get("key") != (stage, total):
                bar = cls(total, f"{prefix}{stage}", stream=stream)
                current.update(bar=bar, key=(stage, total))
            bar.update(done)

        return progress
