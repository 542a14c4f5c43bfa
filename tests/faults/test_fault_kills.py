"""Issue 13: SIGKILL during every writing operation; on reopen the gallery is consistent.

Each operation runs in a worker forked from the warmed-up server of :mod:`_faults_util`.  Two
ways to choose the moment of the kill:

* at random: the worker prints ``ready`` just before the operation (and ``ack`` after each
  enrolment it reports durable, ``refused`` after one deduplication refused); the test kills it after a seeded random delay scaled to the
  operation's measured duration (8 trials per operation);
* at each rename: every atomic write of biomatch (manifests, watermarks, index files, the
  creation marker) finishes with ``os.replace``; the worker kills itself just before, or just
  after, its n-th one, for every n the operation reaches (deterministic).

Then, in this process: the gallery opens (or, for a killed creation, is absent and can be created
again), ``check()`` is empty, everything acknowledged is there and found by deduplicating another
impression, nothing more than the one enrolment whose acknowledgement the kill may have cut, and
an index whose save was killed is used as it is (no rebuild warning).
"""

from __future__ import annotations

import functools
import logging
import random
import shutil
import time

import pytest

from _faults_util import POSITIONS, ForkServer, exit_text, sid
from dedup_util import make_record

TRIALS = 8
ENROL_PERSONS = 12  # records each enrolment worker has ready (it is killed among them)
SAVE_PERSONS = list(range(200, 230))  # the index-save gallery: 30 persons, the last removed
ADD_PERSONS = list(range(300, 310))  # the add-shard gallery: 10 persons over 2 shards
RENAME_PERSONS = list(range(400, 405))  # 3 enrolled, then 2 enrolled by the killed worker


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ForkServer(tmp_path_factory.mktemp("fault_kills") / "stderr.txt")
    persons = [100 + i for i in range(TRIALS * ENROL_PERSONS)] + SAVE_PERSONS + ADD_PERSONS + RENAME_PERSONS
    s.run("prepare", records=[[sid(p), p, 0] for p in persons])
    yield s
    s.close()


# ---- what must hold after a kill ---------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _probe(person: int):
    return make_record("probe", person, 1, POSITIONS)


def _not_found(g, persons) -> list[str]:
    """The persons a probe of another impression does not find (DUPLICATE, under their own id)."""
    out = []
    for p in persons:
        rep = g.deduplicate(_probe(p))
        top = rep.candidates[0].subject_id if rep.candidates else None
        if rep.decision != "DUPLICATE" or top != sid(p):
            out.append(f"{sid(p)}: {rep.decision}, top {top}")
    return out


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, rec):
        self.messages.append(f"{rec.name}: {rec.getMessage()}")


def _open_listening(path):
    """Open a gallery; it and biomatch's warnings while it opened."""
    from biomatch.dedup import Gallery

    seen = _Warnings()
    log = logging.getLogger("biomatch")
    log.addHandler(seen)
    try:
        return Gallery.open(path), seen.messages
    finally:
        log.removeHandler(seen)


def _check_created(path, done: bool, what: str) -> bool:
    """A complete 4-shard gallery, or none and a folder that ``create`` accepts.  True: none."""
    from biomatch.dedup import Gallery
    from biomatch.errors import GalleryExistsError, NotAGalleryError

    interrupted = False
    try:
        g = Gallery.open(path)
    except NotAGalleryError:
        assert not done, f"{what}: created, yet not a gallery"
        interrupted = True
        left = sorted(p.name for p in path.iterdir()) if path.is_dir() else None
        try:
            Gallery.create(path, n_shards=4).close()  # a killed creation never blocks a retry
        except GalleryExistsError as exc:
            pytest.fail(f"{what}: the killed creation left {left}, and create refuses the folder: {exc}")
        g = Gallery.open(path)
    with g:
        assert g.stats()["shards"] == 4, what
        assert g.check() == [], what
    return interrupted


def _answered(job) -> tuple[list, int]:
    """The persons an enrolment worker acknowledged, and how many records it answered for
    (acknowledged or refused by deduplication), in order."""
    answers = [e for e in job.events if e["event"] in ("ack", "refused")]
    return [int(e["sid"][1:]) for e in answers if e["event"] == "ack"], len(answers)


def _check_enrolled(path, acked: list, unacked: list, persons: list, answered: int, what: str) -> None:
    """Every acknowledged subject found; at most one more: the record after the last one answered
    (appended to ``unacked``); no half-present subject."""
    g, _ = _open_listening(path)
    with g:
        assert g.check() == [], what
        st = g.stats()
        extra = st["subjects"] - len(acked) - len(unacked)
        assert extra in (0, 1), f"{what}: {st['subjects']} subjects, {len(acked) + len(unacked)} expected"
        if extra:  # committed, killed before its acknowledgement
            assert answered < len(persons) and sid(persons[answered]) in g, what
            unacked.append(persons[answered])
        assert st["fingers"] == len(POSITIONS) * st["subjects"], f"{what}: a half-present subject"
        assert [sid(p) for p in acked if sid(p) not in g] == [], what
        assert _not_found(g, acked + unacked) == [], what


def _check_index(path, enrolled: list, removed: int, what: str) -> None:
    """A killed index save leaves the old index or the new one (or none), never a damaged one."""
    g, warnings = _open_listening(path)
    with g:
        assert warnings == [], f"{what}: the killed save left an index that had to be rebuilt"
        assert g.check() == [], what
        assert g.stats()["subjects"] == len(enrolled), what
        assert _not_found(g, enrolled) == [], what
        assert sid(removed) not in g, what
        assert all(c.subject_id != sid(removed) for c in g.deduplicate(_probe(removed)).candidates), what


def _check_added(path, done: bool, persons: list, what: str) -> None:
    """The old shard count or the new one; everyone found; another add_shard works."""
    g, _ = _open_listening(path)
    with g:
        n = g.stats()["shards"]
        assert n in ((3,) if done else (2, 3)), f"{what}: {n} shards"
        assert g.check() == [], what
        assert _not_found(g, persons) == [], what
        assert g.add_shard() == n + 1, what  # an orphan shard folder is no obstacle
        assert g.check() == [], what
        assert _not_found(g, persons[:3]) == [], what


def _kill_after(server: ForkServer, job, delay_s: float) -> None:
    """SIGKILL a worker ``delay_s`` after its ``ready`` line."""
    assert server.wait(job, "ready", 60) is not None, server.log_tail()
    time.sleep(delay_s)
    server.kill(job)
    end = server.wait(job, "exit", 30)
    assert end is not None and (end.get("signal") or end.get("code") == 0), \
        f"{exit_text(end)}: {job.first('error') or server.log_tail()}"


# ---- kills at random moments ----------------------------------------------------------------------------
def test_kill_during_create_leaves_a_gallery_or_a_folder_create_accepts(server, tmp_path):
    duration = min(server.run("create", path=str(tmp_path / f"timed{i}"), n_shards=4).first("done")["s"]
                   for i in range(3))
    rng = random.Random(1301)
    interrupted = 0
    for trial in range(TRIALS):
        path = tmp_path / f"g{trial}"
        job = server.submit("create", path=str(path), n_shards=4)
        delay = rng.uniform(0.0, 1.2 * duration)
        _kill_after(server, job, delay)
        interrupted += _check_created(path, job.first("done") is not None,
                                      f"trial {trial}, killed {delay * 1e3:.1f} ms into create")
    assert interrupted, f"no kill of {TRIALS} landed inside a creation (~{duration * 1e3:.0f} ms)"


def test_kill_during_enrolment_loses_nothing_acknowledged(server, tmp_path):
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    Gallery.create(path).close()
    rng = random.Random(1302)
    acked: list[int] = []
    unacked: list[int] = []  # committed, killed before its acknowledgement: at most one per kill
    for trial in range(TRIALS):
        persons = [100 + trial * ENROL_PERSONS + i for i in range(ENROL_PERSONS)]
        dedup = trial % 2 == 0  # with dedup the kill lands mostly in the search, without in the commit
        job = server.submit("enrol", path=str(path), persons=persons, dedup=dedup)
        # the kill lands among the enrolments: after the second acknowledgement, within ~5 more
        assert server.wait(job, "ack", 60) is not None, server.log_tail()
        t0 = time.monotonic()
        assert server.wait_n(job, "ack", 2, 60), server.log_tail()
        time.sleep(rng.uniform(0.0, 5 * (time.monotonic() - t0)))
        server.kill(job)
        end = server.wait(job, "exit", 30)
        assert end is not None and (end.get("signal") or end.get("code") == 0), f"trial {trial}: {exit_text(end)}"
        got, answered = _answered(job)
        acked += got
        _check_enrolled(path, acked, unacked, persons, answered, f"trial {trial} (dedup={dedup})")
    assert len(acked) >= 2 * TRIALS


def test_kill_during_windowed_enrolment_loses_nothing_acknowledged_and_writes_whole_windows(server, tmp_path):
    """Pipelined enrolment (windows of 4): a window's accepted records are one transaction, so a kill
    leaves every acknowledged record, plus either none or all of the next window's."""
    from biomatch.dedup import Gallery

    path = tmp_path / "g"
    Gallery.create(path).close()
    rng = random.Random(1303)
    window = 4
    acked: list[int] = []
    for trial in range(TRIALS // 2):
        # persons of the prepared range past 119 (whose generated probe is only a REVIEW of it)
        persons = [100 + (trial + 2) * ENROL_PERSONS + i for i in range(ENROL_PERSONS)]
        job = server.submit("enrol", path=str(path), persons=persons, dedup=True, window=window)
        # killed as the write of its 1st-3rd window starts, or up to 20 ms into it
        assert server.wait_n(job, "writing", rng.randint(1, 3), 60), server.log_tail()
        time.sleep(rng.uniform(0.0, 0.02))
        server.kill(job)
        end = server.wait(job, "exit", 30)
        assert end is not None and (end.get("signal") or end.get("code") == 0), f"trial {trial}: {exit_text(end)}"
        got, answered = _answered(job)
        acked += got
        what = f"trial {trial} (window {window})"
        g, _ = _open_listening(path)
        with g:
            assert g.check() == [], what
            st = g.stats()
            assert st["fingers"] == len(POSITIONS) * st["subjects"], f"{what}: a half-present subject"
            assert [sid(p) for p in acked if sid(p) not in g] == [], what
            start = answered - answered % window  # the window being written or reported at the kill
            nxt = persons[start:start + window]
            present = [p for p in nxt if sid(p) in g]
            assert present in ([], nxt), f"{what}: part of a window written: {present} of {nxt}"
            everyone = sorted(set(acked) | set(present))
            assert st["subjects"] == len(everyone), what
            assert _not_found(g, everyone) == [], what
        acked = everyone
    assert len(acked) >= TRIALS // 2 * window


def test_kill_during_index_save_keeps_a_usable_index(server, tmp_path):
    """Saves in a loop (a fresh version folder each), and opens that rebuild a deleted index and
    save it."""
    removed, enrolled = SAVE_PERSONS[-1], SAVE_PERSONS[:-1]
    path = tmp_path / "g"
    server.run("populate", path=str(path), persons=SAVE_PERSONS, removed=[removed])
    durations = []
    for i in range(3):
        timed = tmp_path / f"timed{i}"
        shutil.copytree(path, timed)
        shutil.rmtree(timed / "shards/000/index")
        durations.append(server.run("reopen", path=str(timed)).first("done")["s"])
    reopen_s = min(durations)
    rng = random.Random(1303)
    interrupted = 0
    for trial in range(TRIALS):
        if trial % 2 == 0:
            job = server.submit("save", path=str(path))
            assert server.wait(job, "saved", 60) is not None, server.log_tail()
            t0 = time.monotonic()
            assert server.wait_n(job, "saved", 2, 60), server.log_tail()
            time.sleep(rng.uniform(0.0, 3 * (time.monotonic() - t0)))
            server.kill(job)
            end = server.wait(job, "exit", 30)
            assert end is not None and end.get("signal"), exit_text(end)
            interrupted += 1
        else:
            shutil.rmtree(path / "shards/000/index")
            job = server.submit("reopen", path=str(path))
            _kill_after(server, job, rng.uniform(0.0, 1.2 * reopen_s))
            interrupted += job.first("done") is None
        _check_index(path, enrolled, removed, f"trial {trial}")
    assert interrupted > TRIALS // 2


def test_kill_during_add_shard_leaves_the_old_or_the_new_gallery(server, tmp_path):
    template = tmp_path / "template"
    server.run("populate", path=str(template), persons=ADD_PERSONS, n_shards=2)
    durations = []
    for i in range(3):
        shutil.copytree(template, tmp_path / f"timed{i}")
        durations.append(server.run("add-shard", path=str(tmp_path / f"timed{i}")).first("done")["s"])
    duration = min(durations)
    rng = random.Random(1304)
    interrupted = 0
    for trial in range(TRIALS):
        path = tmp_path / f"g{trial}"
        shutil.copytree(template, path)
        job = server.submit("add-shard", path=str(path))
        _kill_after(server, job, rng.uniform(0.0, 1.2 * duration))
        done = job.first("done") is not None
        interrupted += not done
        _check_added(path, done, ADD_PERSONS, f"trial {trial}")
    assert interrupted, f"no kill of {TRIALS} landed inside add_shard (~{duration * 1e3:.0f} ms)"


# ---- kills at each rename ------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["create", "enrol", "save", "add-shard"])
def test_kill_before_and_after_each_rename(server, tmp_path, op):
    base = tmp_path / "base"
    first, added = RENAME_PERSONS[:3], RENAME_PERSONS[3:]
    args: dict = {}
    if op == "create":
        args = {"n_shards": 4}
    elif op == "enrol":
        server.run("populate", path=str(base), persons=first)
        args = {"persons": added, "dedup": True}
    elif op == "save":
        server.run("populate", path=str(base), persons=ADD_PERSONS, removed=[ADD_PERSONS[-1]])
        args = {"rounds": 1}
    else:
        server.run("populate", path=str(base), persons=ADD_PERSONS, n_shards=2)

    def copy(name):
        path = tmp_path / name
        if base.exists():
            shutil.copytree(base, path)
        return path

    count = server.run("die-at", inner=op, n=-1, when="never", path=str(copy("count")), **args).first("renames")["n"]
    assert count >= 2, f"{op}: only {count} renames"
    for n in range(count):
        for when in ("before", "after"):
            what = f"{op} killed {when} rename {n} of {count}"
            path = copy(f"{when}{n}")
            job = server.submit("die-at", inner=op, n=n, when=when, path=str(path), **args)
            end = server.wait(job, "exit", 60)
            assert end is not None and end.get("signal") == 9, \
                f"{what}: {exit_text(end)} {job.first('error') or server.log_tail()}"
            done = job.first("done") is not None
            if op == "create":
                _check_created(path, done, what)
            elif op == "enrol":
                got, answered = _answered(job)
                _check_enrolled(path, first + got, [], added, answered, what)
            elif op == "save":
                _check_index(path, ADD_PERSONS[:-1], ADD_PERSONS[-1], what)
            else:
                _check_added(path, done, ADD_PERSONS, what)
