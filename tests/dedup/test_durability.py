"""SIGKILL a bulk enrolment at random moments: acknowledged enrolments survive, nothing is half-present."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from dedup_util import make_record

CHILD = Path(__file__).resolve().parent / "_child.py"
POSITIONS = (2, 7)  # as _child.BULK_POSITIONS
TRIALS = 20


def _run_and_kill(path: Path, first: int, rng: random.Random) -> list[str]:
    proc = subprocess.Popen([sys.executable, str(CHILD), "bulk", str(path), str(first), "400"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    # Wait for the first acknowledgement, so that the kill lands during enrolment however slow
    # (loaded) the machine is, then at a random moment among the following ones.
    first_ack = proc.stdout.readline()
    time.sleep(rng.uniform(0.0, 0.4))
    os.kill(proc.pid, signal.SIGKILL)
    # Read through the same buffered streams: readline() may have buffered acknowledged lines
    # already (communicate() would read the raw pipe and lose them).
    out, err = first_ack + proc.stdout.read(), proc.stderr.read()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    return [line for line in out.split("\n") if line]  # a line is complete only after its flush


def _answers(g, probes):
    return [[(c.subject_id, round(c.score, 6)) for c in g.identify(p, k=3)] for p in probes]


def test_sigkill_during_bulk_enrolment_loses_nothing_acknowledged(tmp_path):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    Gallery.create(path).close()
    live = Gallery.open(path)  # stays open: catches up incrementally from the store
    rng = random.Random(1234)
    acked: list[str] = []
    unprinted = 0  # committed, then killed before the acknowledgement was printed: at most one per trial
    try:
        for trial in range(TRIALS):
            first = trial * 1000
            got = _run_and_kill(path, first, rng)
            acked.extend(got)
            with Gallery.open(path) as g:  # a fresh open rebuilds everything from the store
                assert g.check() == []
                stats = g.stats()
                extra = stats["subjects"] - len(acked) - unprinted
                assert extra in (0, 1), (stats["subjects"], len(acked), unprinted)
                if extra:  # it can only be the record after the last acknowledged one
                    assert f"p{first + len(got)}" in g
                    unprinted += 1
                assert stats["fingers"] == 2 * stats["subjects"]  # no half-present subject
                for sid in acked:
                    assert sid in g
                # every acknowledged subject of this trial is searchable by another impression
                fresh = [int(s[1:]) for s in got]
                probes = [make_record("probe", person, 1, POSITIONS) for person in fresh[-3:]]
                for person, probe in zip(fresh[-3:], probes):
                    top = g.identify(probe, k=1)[0]
                    assert top.subject_id == f"p{person}"
                if probes:
                    assert _answers(g, probes) == _answers(live, probes)  # caught-up state == rebuild
    finally:
        live.close()
    assert len(acked) >= TRIALS  # every kill landed during enrolment (after an acknowledgement)
