"""Fault-injection helpers (issue 13): what a gallery writes, seeded mutations of it, a fork server.

Imported by the tests (the parent) and by :mod:`_faults_child` (the fork server and its workers).

The fork server is one Python process, warmed up once (biomatch, FAISS, the numba kernels, the
code model, generated records); each operation runs in a process forked from it, which the test
may SIGKILL at any moment, or kill when it hangs, without losing the pytest process to a crash
in native code.  A fork costs milliseconds where a fresh interpreter costs ~1.5 s.

Protocol: the parent writes one JSON command per line to the server's stdin; the server and its
workers write JSON event lines ``{"job", "event", ...}`` to stdout, each with one ``os.write`` of
less than ``PIPE_BUF`` bytes, so lines never interleave.  The server reports ``pid`` right after a
fork and ``exit`` after reaping the worker, so every line a worker wrote precedes its ``exit``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "dedup"))  # dedup_util.make_record (generated Enrolments)

CHILD = HERE / "_faults_child.py"

# ---- the population of the template galleries ----------------------------------------------------
# Sized for speed: each mutation copies a gallery, opens it (rebuilding a damaged index) and
# deduplicates one probe per person (~5 ms each, a third of it preparing the probe): ~70 ms of CPU
# per mutation at 8 persons x 2 fingers.  Their store still spans 12 SQLite pages (48 KB) of
# schema, templates, indexes and free space for random damage to land in.
POSITIONS = (1, 2)
N_PERSONS = 8  # persons 0..7 enrolled as "s0".."s7" by the closed template
CLOSED_REMOVED = (7,)  # removed before the close: tombstone files exist
WAL_ADDED = (8, 9)  # enrolled by a writer SIGKILLed while its WAL holds them
WAL_REMOVED = (6,)  # removed by that writer (a removal in the WAL too)


def sid(person: int) -> str:
    return f"s{person}"


@dataclass(frozen=True)
class Population:
    """Who must be found (``enrolled``) and who must not (``removed``) in a template gallery."""

    enrolled: tuple
    removed: tuple


CLOSED = Population(enrolled=tuple(p for p in range(N_PERSONS) if p not in CLOSED_REMOVED),
                    removed=CLOSED_REMOVED)
WAL = Population(enrolled=tuple(p for p in CLOSED.enrolled if p not in WAL_REMOVED) + WAL_ADDED,
                 removed=CLOSED_REMOVED + WAL_REMOVED)
POPULATIONS = {"closed": CLOSED, "wal": WAL}


# ---- the files a gallery writes ---------------------------------------------------------------------
@dataclass(frozen=True)
class FileKind:
    """One kind of file of a gallery folder.

    Attributes
    ----------
    name : str
    glob : str
        Relative to the gallery folder (several files may match: one is picked per mutation).
    variant : str
        The template that holds it: ``"closed"`` (closed cleanly) or ``"wal"`` (writer killed).
    derived : bool
        An index file: damage must be rebuilt from the store with a warning, never raised.
    also_named : str or None
        Another file an error may name instead (SQLite reads a WAL through its store).
    """

    name: str
    glob: str
    variant: str
    derived: bool
    also_named: str | None = None


_SHARD = "shards/000"
KINDS = (
    FileKind("gallery-manifest", "manifest.json", "closed", False),
    FileKind("store", f"{_SHARD}/store.sqlite", "closed", False),
    FileKind("store-wal", f"{_SHARD}/store.sqlite-wal", "wal", False, f"{_SHARD}/store.sqlite"),
    FileKind("store-shm", f"{_SHARD}/store.sqlite-shm", "wal", False, f"{_SHARD}/store.sqlite"),
    FileKind("watermark", f"{_SHARD}/watermark.json", "closed", False),
    FileKind("index-manifest", f"{_SHARD}/index/manifest.json", "closed", True),
    FileKind("faiss", f"{_SHARD}/index/v*/pos??.faiss", "closed", True),
    FileKind("tombstones", f"{_SHARD}/index/v*/pos??.faiss.removed", "closed", True),
    FileKind("rows", f"{_SHARD}/index/v*/rows??.npz", "closed", True),
)
KIND = {k.name: k for k in KINDS}
# gallery.lock and index/.lock are empty (flock targets): nothing to truncate or flip.


# ---- seeded mutations --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mutation:
    """One seeded damage of one file: ``truncate`` to ``length``, ``flip`` the bits ``bits``
    (byte * 8 + bit), or overwrite ``data`` at ``offset`` (``zero`` / ``random`` blocks)."""

    file: str  # relative to the gallery folder
    op: str
    size: int  # the file's size before
    length: int = 0
    bits: tuple = ()
    offset: int = 0
    data: bytes = b""

    def apply(self, root: Path) -> None:
        path = root / self.file
        raw = bytearray(path.read_bytes())
        if self.op == "truncate":
            raw = raw[:self.length]
        elif self.op == "flip":
            for b in self.bits:
                raw[b // 8] ^= 1 << (b % 8)
        else:
            raw[self.offset:self.offset + len(self.data)] = self.data
        with open(path, "r+b") as f:  # in place, as damage happens (same inode)
            f.write(raw)
            f.truncate(len(raw))

    def __str__(self) -> str:
        what = {"truncate": lambda: f"truncated to {self.length} bytes",
                "flip": lambda: "bits flipped at " + ", ".join(f"{b // 8}.{b % 8}" for b in self.bits),
                "zero": lambda: f"{len(self.data)} zero bytes at {self.offset}",
                "random": lambda: f"{len(self.data)} random bytes at {self.offset} ({self.data[:8].hex()}...)"}
        return f"{self.file} ({self.size} bytes): {what[self.op]()}"


def make_mutation(kind: FileKind, seed: int, sizes: dict) -> Mutation:
    """The mutation ``seed`` of a file kind; ``sizes`` maps the kind's files (relative) to their size."""
    rng = random.Random(f"{kind.name}/{seed}")
    file = rng.choice(sorted(sizes))
    size = sizes[file]
    if seed % 25 == 0:  # every kind is truncated to nothing a few times
        return Mutation(file, "truncate", size, length=0)
    op = rng.choice(("truncate", "flip", "zero", "random"))
    if op == "truncate":
        return Mutation(file, op, size, length=rng.randrange(size))
    if op == "flip":
        n_bits = rng.randint(1, min(8, 8 * size))
        return Mutation(file, op, size, bits=tuple(sorted(rng.sample(range(8 * size), n_bits))))
    n = rng.randint(1, min(size, 512))
    offset = rng.randrange(size - n + 1)
    data = bytes(n) if op == "zero" else rng.randbytes(n)
    return Mutation(file, op, size, offset=offset, data=data)


def kind_files(root: Path, kind: FileKind) -> dict:
    """``{relative path: size}`` of the files of a kind in a gallery folder."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.glob(kind.glob)) if p.is_file()}


# ---- the fork server, parent side --------------------------------------------------------------------
@dataclass
class Job:
    """What the server and a worker reported about one command."""

    id: int
    events: list = field(default_factory=list)

    def first(self, name: str) -> dict | None:
        return next((e for e in self.events if e["event"] == name), None)

    def all(self, name: str) -> list:
        return [e for e in self.events if e["event"] == name]


class ForkServer:
    """A warmed-up :mod:`_faults_child` server; :meth:`submit` runs a command in a forked worker.

    Parameters
    ----------
    log_path : Path
        Where the server's and workers' stderr go (tracebacks, logging's last resort).
    """

    def __init__(self, log_path: Path, ready_timeout_s: float = 180.0):
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        self._proc = subprocess.Popen([sys.executable, str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=self._log, cwd=str(HERE.parents[1]))
        self._jobs: dict[int, Job] = {}
        self._next = 1
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, name="faults-fork-server", daemon=True)
        self._reader.start()
        ready = self.wait(0, "ready", ready_timeout_s)
        if ready is None:
            self.close()
            raise RuntimeError(f"fork server not ready: {self.log_tail()}")

    def _read(self) -> None:
        for line in self._proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self._jobs.setdefault(int(ev.get("job", 0)), Job(int(ev.get("job", 0)))).events.append(ev)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def submit(self, op: str, **args) -> Job:
        """Send a command; the worker's events accumulate in the returned Job."""
        with self._cond:
            job = Job(self._next)
            self._jobs[job.id] = job
            self._next += 1
        self._proc.stdin.write((json.dumps(dict(args, op=op, job=job.id)) + "\n").encode())
        self._proc.stdin.flush()
        return job

    def wait(self, job, event: str, timeout_s: float) -> dict | None:
        """The job's first ``event`` (None on timeout, or when the job exited without it)."""
        jid = job if isinstance(job, int) else job.id
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                j = self._jobs.get(jid)
                got = j.first(event) if j else None
                if got is not None:
                    return got
                if (j is not None and j.first("exit") is not None) or self._eof:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.5))

    def wait_n(self, job: Job, event: str, n: int, timeout_s: float) -> bool:
        """Whether the job reported ``event`` ``n`` times within the timeout (False once it exited)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(job.all(event)) < n:
                left = deadline - time.monotonic()
                if left <= 0 or job.first("exit") is not None or self._eof:
                    return False
                self._cond.wait(min(left, 0.5))
            return True

    def kill(self, job: Job) -> None:
        """SIGKILL the job's worker (the process the server forked for it)."""
        pid = self.wait(job, "pid", 30.0)
        if pid is not None:
            try:
                os.kill(int(pid["pid"]), signal.SIGKILL)
            except ProcessLookupError:
                pass

    def run(self, op: str, timeout_s: float = 120.0, **args) -> Job:
        """Submit and wait for the worker's exit; raise if it failed or timed out."""
        job = self.submit(op, **args)
        end = self.wait(job, "exit", timeout_s)
        if end is None:
            self.kill(job)
            raise RuntimeError(f"{op}: no exit within {timeout_s} s; {self.log_tail()}")
        err = job.first("error")
        if err is not None or end.get("code") != 0:
            raise RuntimeError(f"{op}: failed ({end}): {err['text'] if err else self.log_tail()}")
        return job

    def close(self) -> None:
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


def exit_text(end: dict | None) -> str:
    if end is None:
        return "no exit"
    if end.get("signal"):
        return f"killed by signal {end['signal']}"
    return f"exit code {end.get('code')}"


# ---- running many mutations on the fork server ------------------------------------------------------
@dataclass(frozen=True)
class MutationOutcome:
    """What one seeded mutation gave: ``found`` (everyone found), ``refused`` (a typed error naming
    the file) or ``FAIL`` (anything else: the finding is in ``detail``)."""

    kind: str
    seed: int
    verdict: str
    mutation: str
    detail: str
    ms: float = 0.0

    def __str__(self) -> str:
        return f"{self.kind} seed {self.seed}: {self.mutation}\n    -> {self.detail}"


def signature(outcome: MutationOutcome) -> str:
    """A failure's kind without its particulars (paths, numbers), to group the seeds it hit."""
    text = outcome.detail.strip()
    if text.startswith("untyped error"):
        text = "untyped error: " + text.splitlines()[-1]
    text = re.sub(r"\d+", "N", re.sub(r"'[^']*'", "'...'", text))
    return ": ".join(text.split(": ")[:4])[:160]


def report(outcomes: list) -> str:
    """The failures grouped by :func:`signature`: count, seeds, and the first one in full."""
    groups: dict[str, list] = {}
    for o in outcomes:
        if o.verdict == "FAIL":
            groups.setdefault(signature(o), []).append(o)
    out = []
    for sig, group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        out.append(f"[{len(group)}x] {sig}\n  seeds {[o.seed for o in group]}\n  e.g. {group[0]}")
    return "\n".join(out)


def run_mutations(server: ForkServer, kind: FileKind, template: Path, work: Path, seeds, workers: int = 2,
                  timeout_s: float = 60.0) -> list:
    """Every seed's :class:`MutationOutcome`, run by ``workers`` forked workers in parallel.

    Worker ``i`` takes every ``workers``-th seed from the ``i``-th, reporting ``start`` and
    ``result`` for each.  One that dies (a crash in native code) or is silent for ``timeout_s``
    (a hang; it is killed) turns its current seed into a ``FAIL``; the rest of its seeds go to a
    new worker.
    """
    seeds = list(seeds)
    chunks = [seeds[i::workers] for i in range(workers)]
    results: dict[int, MutationOutcome] = {}
    running = []  # [job, seeds, events seen, current seed, time of the last event, killed]

    def launch(part):
        if part:
            job = server.submit("mutate", kind=kind.name, template=str(template), work=str(work), seeds=part)
            running.append([job, part, 0, None, time.monotonic(), False])

    for part in chunks:
        launch(part)
    while running:
        time.sleep(0.02)
        for entry in list(running):
            job, part, seen, current, last, killed = entry
            with server._cond:  # the exit first: every event of the worker precedes it
                end = job.first("exit")
                new = job.events[seen:]
            for ev in new:
                if ev["event"] == "start":
                    current, last = ev["seed"], time.monotonic()
                elif ev["event"] == "result":
                    results[ev["seed"]] = MutationOutcome(kind.name, ev["seed"], ev["verdict"], ev["mutation"],
                                                          ev["detail"], ev.get("ms", 0.0))
                    current, last = None, time.monotonic()
            entry[2:5] = [seen + len(new), current, last]
            if end is None:
                if not killed and time.monotonic() - last > timeout_s:
                    server.kill(job)
                    entry[5] = True
                continue
            running.remove(entry)
            rest = [s for s in part if s not in results]
            if not rest:
                continue
            bad = current if current is not None else rest[0]
            err = job.first("error")
            why = (f"no answer within {timeout_s:.0f} s (a hang; killed)" if killed else
                   f"worker died ({exit_text(end)}): {err['text'] if err else server.log_tail(1500)}")
            results[bad] = MutationOutcome(kind.name, bad, "FAIL",
                                           str(make_mutation(kind, bad, kind_files(template, kind))), why)
            launch([s for s in rest if s != bad])
    return [results[s] for s in seeds]
