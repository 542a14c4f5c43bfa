"""Helpers of the service tests: a small generated gallery, keys, and the real server on a loopback port."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "dedup"))
from dedup_util import make_record  # noqa: E402

ROLES = ("enrol", "search", "adjudicate", "audit", "admin", "metrics")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_gallery(path: Path, persons: int = 12, decision=None):
    """A gallery of ``persons`` generated ten-finger people ``P-0`` ... (impression 0 enrolled)."""
    from biomatch.decide import DecisionParams
    from biomatch.dedup import Gallery

    with Gallery.create(path, generated_background=True, decision=decision or DecisionParams()) as g:
        g.bulk_enroll([make_record(f"P-{i}", i) for i in range(persons)])
    return path


def make_keys(path: Path) -> dict:
    """One key per role, a key with every role (``all``) and a revoked one (``revoked``)."""
    from biomatch.service.auth import KeyStore, service_dir

    store = KeyStore(service_dir(path))
    keys = {r: store.create([r], f"test {r}")[1] for r in ROLES}
    keys["all"] = store.create(list(ROLES), "test all")[1]
    rec, keys["revoked"] = store.create(list(ROLES), "test revoked")
    store.revoke(rec.key_id)
    return keys


def record_json(subject_id: str | None, person: int, impression: int = 1, positions=range(1, 11), fmt="native") -> dict:
    """A request body of generated templates (base64) of ``person``."""
    from biomatch.formats import dump

    rec = make_record("x", person, impression=impression, positions=positions)
    body = {"fingers": [{"position": p, "data": base64.b64encode(dump(t, fmt)).decode()}
                        for p, t in rec.fingers.items()]}
    if subject_id is not None:
        body["subject_id"] = subject_id
    return body


# One finger's evidence capped at 2.2 decades: four mated fingers of another impression then fuse
# to ~5.7 decades, between the REVIEW (5) and DUPLICATE (6) thresholds of a small gallery.
REVIEW_CAP_DECADES = 2.2
REVIEW_POSITIONS = (1, 2, 3, 7)


def review_gallery(path: Path, persons: int = 12):
    """A gallery where another impression of ``REVIEW_POSITIONS`` of an enrolled person is a REVIEW."""
    from biomatch.decide import DecisionParams

    return make_gallery(path, persons, DecisionParams(finger_evidence_max_decades=REVIEW_CAP_DECADES))


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


class Server:
    """``biomatch serve`` as a subprocess on 127.0.0.1, ready when /healthz answers."""

    def __init__(self, gallery: Path, *args: str, log: Path | None = None):
        self.gallery, self.args = gallery, args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log or gallery.parent / f"server-{self.port}.log"
        self.proc = None

    def start(self, timeout_s: float = 90.0) -> "Server":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "biomatch", "serve", str(self.gallery), "--host",
                                          "127.0.0.1", "--port", str(self.port), *self.args],
                                         stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # polling the readiness check, not waiting for it blindly
        self.stop()
        raise RuntimeError(f"server not ready in {timeout_s} s: {self.log.read_text()[-3000:]}")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def client(self, timeout_s: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout_s)


def enrol_with_key(c: httpx.Client, body: dict, key: str, idem: str) -> httpx.Response:
    return c.post("/v1/enrol", json=body, headers=dict(auth(key), **{"Idempotency-Key": idem}))


def kill_trial(gallery: Path, keys: dict, trial: int, first_person: int, clients: int = 4,
               acked_before_kill: int = 3, timeout_s: float = 60.0) -> dict:
    """One SIGKILL trial: start the server, let ``clients`` threads enrol new subjects (each with an
    Idempotency-Key) until ``acked_before_kill`` are acknowledged, kill -9 the server's process group,
    restart it, then check that every acknowledged subject is there and retry every request sent.

    Returns
    -------
    dict
        ``sent``, ``acked``, ``missing`` (acknowledged, absent after the restart: must be 0),
        ``retry_failed`` (a retry not answered 200 enrolled), ``answer_changed`` (an acknowledged
        retry answered differently), ``recovered`` (retries answered from a lost answer),
        ``audit_ok``, ``subjects`` (sent ids, for the caller's count of "none twice"),
        ``kill_after_s``.
    """
    server = Server(gallery).start()
    acked, sent = {}, {}
    stop = threading.Event()
    lock = threading.Lock()
    counter = [first_person]

    def client():
        with httpx.Client(base_url=server.url, timeout=timeout_s) as c:
            while not stop.is_set():
                with lock:
                    counter[0] += 1
                    i = counter[0]
                sid = f"K{trial}-{i}"
                body = record_json(sid, 5000 + i, impression=0)
                sent[sid] = body
                try:
                    r = enrol_with_key(c, body, keys["enrol"], f"idem-{sid}")
                except httpx.TransportError:
                    return
                if r.status_code == 200:
                    acked[sid] = r.json()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.monotonic()
    try:
        for t in threads:
            t.start()
        deadline = t0 + timeout_s
        while len(acked) < acked_before_kill and time.monotonic() < deadline:
            time.sleep(0.02)  # polls the acknowledgement count (not a synchronisation sleep)
        kill_after = time.monotonic() - t0
        server.kill()
    finally:
        stop.set()
        server.kill()
        for t in threads:
            t.join(timeout=timeout_s)
    acked = dict(acked)
    out = {"trial": trial, "sent": len(sent), "acked": len(acked), "missing": 0, "retry_failed": 0,
           "answer_changed": 0, "recovered": 0, "audit_ok": False, "subjects": set(sent), "kill_after_s": kill_after}
    server = Server(gallery).start()
    try:
        with server.client() as c:
            for sid in acked:
                if c.get(f"/v1/subjects/{sid}", headers=auth(keys["search"])).status_code != 200:
                    out["missing"] += 1
            for sid, body in sent.items():
                r = enrol_with_key(c, body, keys["enrol"], f"idem-{sid}")
                if r.status_code != 200 or not r.json()["enrolled"]:
                    out["retry_failed"] += 1
                    continue
                out["recovered"] += bool(r.json()["recovered"])
                if sid in acked and r.json() != acked[sid]:
                    out["answer_changed"] += 1
            out["audit_ok"] = bool(c.get("/v1/audit/verify", headers=auth(keys["audit"])).json()["ok"])
    finally:
        server.stop()
    return out


def enrolled_counts(gallery: Path, subject_ids) -> tuple[int, int]:
    """``(subjects in the gallery, how many of subject_ids are in it)``, read from the store."""
    from biomatch.dedup import Gallery

    with Gallery.open(gallery, read_only=True) as g:
        return int(g.stats()["subjects"]), sum(sid in g for sid in subject_ids)
