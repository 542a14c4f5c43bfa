"""Fork server of the fault-injection tests (not collected by pytest): ``python _faults_child.py``.

Warms up (biomatch, FAISS, numba kernels, the code model), prints ``ready``, then reads JSON
commands on stdin.  ``prepare`` runs here (it fills the cache of generated records that forked
workers share); every other command runs in a forked worker that the test may SIGKILL.  See
:mod:`_faults_util` for the protocol.

Commands (``op``)::

    prepare   records [[subject_id, person, impression], ...]   generate and cache records
    populate  path persons removed n_shards   create, enrol ``persons``, remove ``removed``, close
    hold      path                   open a copy of the closed template, enrol WAL_ADDED, remove
                                     WAL_REMOVED, print "held", sleep (the test kills it: the WAL
                                     keeps those commits)
    mutate    template work kind seeds   per seed: damage a fresh copy, open it, search everyone
    sound     template work variant      the same without damage (the template itself is sound)
    create    path n_shards          "ready", Gallery.create, "done" with its duration
    enrol     path persons dedup     "ready", enrol one at a time, "ack" (or "refused") after each
    save      path                   "ready", save every shard's index again and again ("saved")
    reopen    path                   "ready", open (rebuilding a missing index, saved at open), close,
                                     "done" with its duration
    add-shard path                   "ready", add_shard, "done" with its duration
    die-at    inner n when ...       run ``inner`` (one of the above), SIGKILLed "before" or "after"
                                     its n-th os.replace (n < 0: never; "renames" counts them)
"""

from __future__ import annotations

import gc
import json
import logging
import os
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _faults_util as fu  # noqa: E402
from dedup_util import make_record  # noqa: E402  (on sys.path through _faults_util)

_PIPE_BUF = 4096
_RECORDS: dict = {}


def emit(job: int, event: str, **fields) -> None:
    """One event line in one write (< PIPE_BUF bytes: lines of concurrent workers never mix)."""
    for key in ("text", "detail"):
        if isinstance(fields.get(key), str) and len(fields[key]) > 2500:
            fields[key] = fields[key][:600] + " [...] " + fields[key][-1800:]
    line = (json.dumps(dict(fields, job=job, event=event)) + "\n").encode()
    if len(line) >= _PIPE_BUF:
        line = (json.dumps({"job": job, "event": event, "text": "event too long"}) + "\n").encode()
    os.write(1, line)


def record(subject_id: str, person: int, impression: int = 0):
    key = (subject_id, person, impression)
    if key not in _RECORDS:
        _RECORDS[key] = make_record(subject_id, person, impression, fu.POSITIONS)
    return _RECORDS[key]


def _warm() -> None:
    """One full cycle, so that forked workers start with everything loaded and compiled."""
    from biomatch.dedup import Gallery

    with tempfile.TemporaryDirectory() as tmp:
        with Gallery.create(Path(tmp) / "g") as g:
            g.enroll(record("w0", 900), dedup=True)
            g.enroll(record("w1", 901), dedup=True)
            g.deduplicate(record("probe", 900, 1))
            g.remove("w1")
            g.add_shard()
        with Gallery.open(Path(tmp) / "g") as g:
            g.deduplicate(record("probe", 900, 1))
            g.check()
        del g
        gc.collect()


# ---- worker operations (each runs in a forked process) ---------------------------------------------
def op_populate(job: int, cmd: dict) -> None:
    from biomatch.dedup import Gallery

    with Gallery.create(cmd["path"], n_shards=int(cmd.get("n_shards", 1))) as g:
        for p in cmd["persons"]:
            g.enroll(record(fu.sid(p), p), dedup=False)
        for p in cmd.get("removed", ()):
            g.remove(fu.sid(p))


def op_hold(job: int, cmd: dict) -> None:
    from biomatch.dedup import Gallery

    g = Gallery.open(cmd["path"])
    for p in fu.WAL_ADDED:
        g.enroll(record(fu.sid(p), p), dedup=False)
    for p in fu.WAL_REMOVED:
        g.remove(fu.sid(p))
    emit(job, "held")
    time.sleep(3600)


class _Warnings(logging.Handler):
    """Collects biomatch's WARNING (and worse) records."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, rec: logging.LogRecord) -> None:
        self.messages.append(f"{rec.name}: {rec.getMessage()}")


def _search_everyone(g, pop: fu.Population) -> list[str]:
    """What is wrong with the answers of an opened gallery (empty: every person found, no one else)."""
    problems = []
    st = g.stats()
    if st["subjects"] != len(pop.enrolled) or st["fingers"] != len(pop.enrolled) * len(fu.POSITIONS):
        problems.append(f"stats: {st['subjects']} subjects, {st['fingers']} fingers; expected "
                        f"{len(pop.enrolled)}, {len(pop.enrolled) * len(fu.POSITIONS)}")
    for p in pop.enrolled:
        rep = g.deduplicate(record("probe", p, 1))
        top = rep.candidates[0].subject_id if rep.candidates else None
        if rep.decision != "DUPLICATE" or top != fu.sid(p):
            problems.append(f"{fu.sid(p)} not found: {rep.decision}, top candidate {top}")
        if fu.sid(p) not in g:
            problems.append(f"{fu.sid(p)} not in the gallery")
    for p in pop.removed:
        rep = g.deduplicate(record("probe", p, 1))
        if any(c.subject_id == fu.sid(p) for c in rep.candidates) or fu.sid(p) in g:
            problems.append(f"removed {fu.sid(p)} found again ({rep.decision})")
    return problems


def _matters(kind: fu.FileKind, before: bytes, after: bytes) -> bool:
    """Whether a derived file's damage must be noticed (JSON whitespace does not count)."""
    if before == after:
        return False
    if kind.glob.endswith(".json"):
        try:
            return json.loads(before) != json.loads(after)
        except ValueError:
            return True
    return True


def _verdict(root: Path, kind: fu.FileKind, m: fu.Mutation, matters: bool, pop: fu.Population) -> tuple[str, str]:
    """``("found" | "refused" | "FAIL", detail)`` of a damaged gallery (see test_fault_mutations)."""
    from biomatch.dedup import Gallery
    from biomatch.errors import BiomatchError

    named = [str(root / m.file)] + ([str(root / kind.also_named)] if kind.also_named else [])
    log = logging.getLogger("biomatch")
    seen = _Warnings()
    log.addHandler(seen)
    try:
        with Gallery.open(root) as g:
            problems = _search_everyone(g, pop)
            integrity = g.check()
    except BiomatchError as exc:
        text = f"{type(exc).__name__}: {exc}"
        if kind.derived:
            return "FAIL", f"an index file's damage raised instead of a rebuild: {text}"
        if any(n in str(exc) for n in named):
            return "refused", text
        return "FAIL", f"typed error not naming {named[0]!r}: {text}"
    except Exception:  # noqa: BLE001 - any untyped error is the finding
        return "FAIL", "untyped error: " + traceback.format_exc(limit=-8)
    finally:
        log.removeHandler(seen)
    if problems:
        return "FAIL", "; ".join(problems) + (f" (warnings: {seen.messages[:2]})" if seen.messages else "")
    if kind.derived:
        if matters and not seen.messages:
            return "FAIL", "derived file damaged, yet no warning: used as it is, or rebuilt silently"
        again = _Warnings()
        log.addHandler(again)
        try:
            with Gallery.open(root) as g:
                n = g.stats()["subjects"]
        finally:
            log.removeHandler(again)
        if again.messages or n != len(pop.enrolled):
            return "FAIL", f"second open: {n} subjects, warnings {again.messages[:2]} (rebuild not saved?)"
    note = f"warnings: {seen.messages[:2]}" if seen.messages else "no warning"
    if integrity:
        note += f"; check(): {integrity[:2]}"
    return "found", note


def op_mutate(job: int, cmd: dict) -> None:
    """Damage a fresh copy of the template for each seed in turn ("start", then "result")."""
    kind = fu.KIND[cmd["kind"]]
    for seed in cmd["seeds"]:
        emit(job, "start", seed=seed)
        t0 = time.perf_counter()
        root = Path(cmd["work"]) / f"{kind.name}-{seed}"
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(cmd["template"], root)
        m = fu.make_mutation(kind, seed, fu.kind_files(root, kind))
        before = (root / m.file).read_bytes()
        m.apply(root)
        matters = _matters(kind, before, (root / m.file).read_bytes())
        verdict, detail = _verdict(root, kind, m, matters, fu.POPULATIONS[kind.variant])
        emit(job, "result", seed=seed, verdict=verdict, detail=detail, mutation=str(m)[:600],
             ms=(time.perf_counter() - t0) * 1e3)
        if verdict != "FAIL":
            shutil.rmtree(root, ignore_errors=True)  # failures stay, for a look


def op_sound(job: int, cmd: dict) -> None:
    """Open an undamaged copy of a template: everyone found, no warning, a sound store."""
    from biomatch.dedup import Gallery

    root = Path(cmd["work"]) / f"sound-{cmd['variant']}"
    shutil.copytree(cmd["template"], root)
    seen = _Warnings()
    logging.getLogger("biomatch").addHandler(seen)
    with Gallery.open(root) as g:
        problems = _search_everyone(g, fu.POPULATIONS[cmd["variant"]])
        integrity = g.check()
    emit(job, "result", problems=problems, warnings=seen.messages, integrity=integrity)
    shutil.rmtree(root)


def op_create(job: int, cmd: dict) -> None:
    from biomatch.dedup import Gallery

    emit(job, "ready")
    t0 = time.perf_counter()
    Gallery.create(cmd["path"], n_shards=int(cmd["n_shards"])).close()
    emit(job, "done", s=time.perf_counter() - t0)


def op_enrol(job: int, cmd: dict) -> None:
    from biomatch.dedup import Gallery

    recs = [record(fu.sid(p), p) for p in cmd["persons"]]
    window = int(cmd.get("window", 1))
    with Gallery.open(cmd["path"]) as g:
        emit(job, "ready")

        def answer(report) -> None:
            if report.enrolled:
                emit(job, "ack", sid=report.subject_id)  # durable: enroll returned / the window reported it
            else:  # deduplication judged it a REVIEW or DUPLICATE of someone enrolled
                emit(job, "refused", sid=report.subject_id, decision=report.decision)

        if window > 1:  # pipelined: a window searched in parallel, its accepted records written together
            from biomatch.dedup import pipeline

            write = pipeline._insert

            def traced(gallery, accepted):  # tells the test when a window's write starts, to kill in it
                emit(job, "writing", n=len(accepted))
                return write(gallery, accepted)

            pipeline._insert = traced
            g.enroll_many(recs, window=window, n_threads=2, progress=lambda done, total, res: answer(res))
        else:
            for rec in recs:
                answer(g.enroll(rec, dedup=bool(cmd["dedup"])))
    emit(job, "done")


def op_save(job: int, cmd: dict) -> None:
    from biomatch.dedup import Gallery

    g = Gallery.open(cmd["path"])
    emit(job, "ready")
    for i in range(int(cmd.get("rounds", 10_000))):
        for s in g._shards:
            # Save the same rows again and again, as if they were new: a save skips the state it
            # was loaded from or last saved (same marks in the manifest), so forget that version.
            s._retrieval._dirty = True
            s._retrieval._loaded_version = None
            if not s._save_index():
                raise RuntimeError("save failed")
        emit(job, "saved", i=i)
    g.close()


def op_reopen(job: int, cmd: dict) -> None:
    from biomatch.dedup import Gallery

    emit(job, "ready")
    t0 = time.perf_counter()
    Gallery.open(cmd["path"]).close()
    emit(job, "done", s=time.perf_counter() - t0)


def op_add_shard(job: int, cmd: dict) -> None:
    from biomatch.dedup import Gallery

    with Gallery.open(cmd["path"]) as g:
        emit(job, "ready")
        t0 = time.perf_counter()
        n = g.add_shard()
        emit(job, "done", s=time.perf_counter() - t0, n_shards=n)


def op_die_at(job: int, cmd: dict) -> None:
    """Run the operation ``inner``, SIGKILLing this worker just before (or after) its ``n``-th
    ``os.replace`` (0-based; every atomic write of biomatch renames a finished temporary file),
    or never when ``n`` < 0; reports how many renames it made ("renames")."""
    real = os.replace
    count = [0]

    def replace(src, dst, *a, **k):
        if count[0] == cmd["n"] and cmd["when"] == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst, *a, **k)
        if count[0] == cmd["n"] and cmd["when"] == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        count[0] += 1

    os.replace = replace
    try:
        OPS[cmd["inner"]](job, cmd)
    finally:
        os.replace = real
    emit(job, "renames", n=count[0])


OPS = {"populate": op_populate, "hold": op_hold, "mutate": op_mutate, "sound": op_sound, "create": op_create,
       "enrol": op_enrol, "save": op_save, "reopen": op_reopen, "add-shard": op_add_shard, "die-at": op_die_at}


# ---- the server ---------------------------------------------------------------------------------------
def _fork(cmd: dict, live: dict) -> None:
    job = int(cmd["job"])
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()  # the workers' collections then leave the server's objects alone (no copy-on-write)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            OPS[cmd["op"]](job, cmd)
        except BaseException:  # noqa: BLE001 - reported to the parent, which decides
            emit(job, "error", text=traceback.format_exc())
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    live[pid] = job
    emit(job, "pid", pid=pid)


def _reap(live: dict) -> None:
    while live:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        job = live.pop(pid, 0)
        emit(job, "exit", code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
             signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)


def _handle(cmd: dict, live: dict) -> None:
    job = int(cmd["job"])
    if cmd["op"] == "prepare":
        try:
            for subject_id, person, impression in cmd["records"]:
                record(subject_id, int(person), int(impression))
            emit(job, "exit", code=0, signal=None)
        except Exception:  # noqa: BLE001
            emit(job, "error", text=traceback.format_exc())
            emit(job, "exit", code=1, signal=None)
        return
    _fork(cmd, live)


def main() -> int:
    _warm()
    emit(0, "ready")
    live: dict = {}
    buf = b""
    reading = True
    while reading or live:
        ready = select.select([0], [], [], 0.005)[0] if reading else []
        if not reading:
            time.sleep(0.005)
        _reap(live)
        if not ready:
            continue
        chunk = os.read(0, 1 << 16)
        if not chunk:  # the parent is done: end what is left (our own workers)
            reading = False
            for pid in list(live):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                _handle(json.loads(line), live)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
