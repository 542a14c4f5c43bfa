"""The command line's one progress display (biomatch.cli._common.Progress)."""

from __future__ import annotations

import io

from biomatch.cli._common import Progress


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_quiet_prints_nothing():
    buf = Tty()
    p = Progress(3, "enrol", quiet=True, stream=buf)
    for i in range(1, 4):
        p.update(i)
    assert buf.getvalue() == "" and Progress.stages("x: ", quiet=True) is None


def test_a_log_gets_the_first_unit_then_one_line_per_tenth():
    buf = io.StringIO()
    p = Progress(100, "dedup", stream=buf)
    for i in range(1, 101):
        p.update(i)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 11 and lines[0].startswith("dedup 1/100 (") and lines[-1].startswith("dedup 100/100 (") and "\r" not in buf.getvalue()


def test_a_terminal_gets_one_redrawn_line_ending_with_the_time():
    buf = Tty()
    p = Progress(3, "extract", stream=buf)
    p.update(3)
    out = buf.getvalue()
    assert out.startswith("\rextract [") and "3/3" in out and out.endswith(" s\n")


def test_stages_label_one_bar_per_stage():
    buf = Tty()
    progress = Progress.stages("db1: ", stream=buf)
    progress("extract", 2, 2)
    progress("match", 3, 3)
    out = buf.getvalue()
    assert "db1: extract [" in out and "2/2" in out and "db1: match [" in out and "3/3" in out
    assert out.count("\n") == 2
