"""Issue 13: every file a gallery writes, truncated, bit-flipped or overwritten (100 seeded mutations each).

Each mutation damages a fresh copy of a template gallery, opens it, and deduplicates another
impression of every enrolled person.  The templates (built once per module by the fork server of
:mod:`_faults_util`): ``closed``, 8 generated persons with fingers 1-2 enrolled and one removed
(so tombstone files exist), closed cleanly (index saved); ``wal``, a copy in which a writer
enrolled two more, removed one, and was SIGKILLed, so that ``store.sqlite-wal`` (and ``-shm``)
hold acknowledged commits.  Mutations (``random.Random(f"{kind}/{seed}")``, see
:func:`_faults_util.make_mutation`): truncation at a random length (to 0 for every 25th seed),
1-8 bit flips, a block of 1-512 zero or random bytes.

Allowed outcomes:

* found: every enrolled person is found (``DUPLICATE``, top candidate under their own id), the
  removed ones are not, ``stats`` counts them all.  When an index file's damage matters (every
  changed byte of a checksummed file; JSON whitespace does not count) a warning must say it is
  rebuilt, and a second open must be quiet (the rebuilt index was saved).
* refused, for source-of-truth files only: a ``BiomatchError`` whose message contains the damaged
  file's path (for the WAL and its ``-shm``, the store's path: SQLite reads them through it).

Anything else fails, listed with its seed and mutation: an untyped exception, a typed error that
does not name the file, an index file's damage raised instead of rebuilt, a person not found or
found under another id, a removed person found, a silent rebuild, a crash or a hang (60 s).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from _faults_util import (CLOSED, KINDS, N_PERSONS, POPULATIONS, WAL_ADDED, ForkServer, kind_files, report,
                          run_mutations, sid)

MUTATIONS_PER_KIND = 100


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A scratch folder on tmpfs when there is one: the copies are fsync'd and deleted by the
    hundred, and durability is not what these tests measure.  The first failed copies of each
    kind are kept (moved to pytest's temporary folder), for a look."""
    keep = tmp_path_factory.mktemp("fault_mutations")
    shm = Path("/dev/shm")
    root = Path(tempfile.mkdtemp(prefix="biomatch-faults-", dir=shm)) if os.access(shm, os.W_OK) else keep / "work"
    root.mkdir(exist_ok=True)
    yield root
    if root != keep / "work":
        kept: Counter = Counter()
        for left in sorted(root.glob("*-*"), key=lambda p: (p.name.rsplit("-", 1)[0], len(p.name), p.name)):
            kind = left.name.rsplit("-", 1)[0]
            if not kind.startswith("template") and kept[kind] < 3:
                kept[kind] += 1
                shutil.move(str(left), str(keep / left.name))
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ForkServer(tmp_path_factory.mktemp("fault_server") / "stderr.txt")
    persons = range(max(WAL_ADDED) + 1)
    s.run("prepare", records=[[sid(p), p, 0] for p in persons] + [["probe", p, 1] for p in persons])
    yield s
    s.close()


@pytest.fixture(scope="module")
def templates(server, work):
    closed, wal = work / "template-closed", work / "template-wal"
    server.run("populate", path=str(closed), persons=list(range(N_PERSONS)), removed=list(CLOSED.removed))
    shutil.copytree(closed, wal)
    holder = server.submit("hold", path=str(wal))
    assert server.wait(holder, "held", 120) is not None, server.log_tail()
    server.kill(holder)
    assert server.wait(holder, "exit", 30) is not None
    assert (wal / "shards/000/store.sqlite-wal").stat().st_size > 0
    return {"closed": closed, "wal": wal}


@pytest.mark.parametrize("variant", sorted(POPULATIONS))
def test_undamaged_template_is_sound(server, templates, work, variant):
    job = server.run("sound", template=str(templates[variant]), work=str(work), variant=variant)
    got = job.first("result")
    assert got["problems"] == [] and got["warnings"] == [] and got["integrity"] == [], got


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_damaged_file_is_rebuilt_or_refused_by_name(server, templates, work, kind):
    template = templates[kind.variant]
    assert kind_files(template, kind), f"the {kind.variant} template has no {kind.glob}"
    outcomes = run_mutations(server, kind, template, work, range(MUTATIONS_PER_KIND))
    tally = dict(Counter(o.verdict for o in outcomes))
    assert "FAIL" not in tally, f"mutations of {kind.name}: {tally}\n{report(outcomes)}"
