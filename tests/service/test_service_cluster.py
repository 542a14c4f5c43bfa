"""The service over the Ray cluster (``biomatch serve GALLERY --cluster ADDRESS``): the embedded
server's answers, request for request.  A private two-CPU Ray head on a loopback address
(127.0.0.2: Ray rewrites 127.0.0.1 in a cluster address), stopped at the end.  Skipped without Ray."""

from __future__ import annotations

import pytest
from service_util import Server, auth, make_gallery, make_keys, record_json

from _util import need_module  # noqa: E402

ray = need_module("ray", "Ray is not installed (pip install -e '.[test]' or '.[cluster]'): service on a cluster untested")

LOOPBACK = "127.0.0.2"


def _answers(server: Server, keys: dict) -> list:
    """Read-only answers (deduplicate, identify, verify, subject) for mated and non-mated probes."""
    out = []
    with server.client() as c:
        for i, person in enumerate((3, 7, 500)):
            r = c.post("/v1/deduplicate", json=record_json(f"q{i}", person), headers=auth(keys["search"]))
            assert r.status_code == 200, r.text
            body = r.json()
            out.append((body["decision"], [(x["subject_id"], round(x["score"], 9)) for x in body["candidates"]]))
        r = c.post("/v1/identify", json={**record_json(None, 5), "k": 3}, headers=auth(keys["search"]))
        assert r.status_code == 200, r.text
        out.append([x["subject_id"] for x in r.json()["candidates"]])
        r = c.get("/v1/subjects/P-4", headers=auth(keys["search"]))
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


def test_cluster_server_gives_the_embedded_answers(tmp_path):
    from ray.cluster_utils import Cluster

    from biomatch.dedup.cluster import release_actors

    gallery = make_gallery(tmp_path / "g")
    keys = make_keys(gallery)
    embedded = Server(gallery).start()
    try:
        want = _answers(embedded, keys)
    finally:
        embedded.stop()
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "node_ip_address": LOOPBACK, "resources": {"biomatch_gallery": 1, "biomatch_shard_000": 1}})
    server = None
    try:
        server = Server(gallery, "--cluster", c.address).start(timeout_s=180)
        assert _answers(server, keys) == want
        with server.client() as cl:  # served by the shard actors (their process ids), not in-process
            stats = cl.get("/v1/stats", headers=auth(keys["admin"])).json()
        assert stats["cluster"]["shard_pids"] and server.proc.pid not in stats["cluster"]["shard_pids"]
    finally:
        if server is not None:
            server.stop()
        release_actors(gallery)
        c.shutdown()
