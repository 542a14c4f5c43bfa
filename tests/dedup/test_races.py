"""Records of one person enrolled at the same moment by threads and processes: exactly one gets in."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from dedup_util import make_record

CHILD = Path(__file__).resolve().parent / "_child.py"


def _seed(path):
    from biomatch.dedup import Gallery

    g = Gallery.create(path)
    for i in range(5):
        g.enroll(make_record(f"other{i}", 500 + i))
    return g


def _check(decisions):
    enrolled = [d for d in decisions if d[1]]
    assert len(enrolled) == 1, decisions
    assert enrolled[0][0] in ("UNIQUE", "REVIEW")
    assert all(d[0] == "DUPLICATE" for d in decisions if not d[1]), decisions


def test_threads_sharing_one_gallery(tmp_path):
    g = _seed(tmp_path / "g")
    records = [make_record(f"t{i}", 7, i) for i in range(6)]
    barrier = threading.Barrier(len(records))
    out = []

    def work(rec):
        barrier.wait()
        r = g.enroll(rec)
        out.append((r.decision, r.enrolled))

    threads = [threading.Thread(target=work, args=(r,)) for r in records]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    g.close()
    _check(out)


def test_threads_with_their_own_gallery_objects(tmp_path):
    from biomatch.dedup import Gallery

    _seed(tmp_path / "g").close()
    galleries = [Gallery.open(tmp_path / "g") for _ in range(4)]
    barrier = threading.Barrier(len(galleries))
    out = []

    def work(g, i):
        rec = make_record(f"o{i}", 8, i)
        barrier.wait()
        r = g.enroll(rec)
        out.append((r.decision, r.enrolled))

    threads = [threading.Thread(target=work, args=(g, i)) for i, g in enumerate(galleries)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in galleries:
        g.close()
    _check(out)


def test_processes(tmp_path):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    _seed(path).close()
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(CHILD), "race", str(path), "9", str(i), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    go.touch()
    out = []
    for p in procs:
        text, err = p.communicate(timeout=60)
        assert p.returncode == 0, err[-2000:]
        decision, enrolled, _ = text.split()
        out.append((decision, enrolled == "1"))
    _check(out)
    with Gallery.open(path) as g:
        assert g.stats()["subjects"] == 6
