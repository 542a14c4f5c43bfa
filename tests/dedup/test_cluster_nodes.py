"""Two Ray nodes on this machine, on a loopback address: shards placed by custom resources.

The head advertises ``biomatch_gallery`` and ``biomatch_shard_000``; a second raylet (what
``ray start --address=HEAD --resources='{"biomatch_shard_001": 1}'`` starts on another machine)
advertises shards 001 and 002.  Both see the gallery folder at the same path, as machines
sharing a file system would.  127.0.0.2, not 127.0.0.1: Ray replaces 127.0.0.1 in a cluster
address by the machine's interface address, which the loopback-bound head does not serve.
Skipped without Ray.
"""

from __future__ import annotations

import pytest

from dedup_util import make_record

from _util import need_module  # noqa: E402

ray = need_module("ray", "Ray is not installed (pip install -e '.[test]' or '.[cluster]'): distributed gallery untested")

LOOPBACK = "127.0.0.2"


def test_shards_on_a_second_node_give_the_one_shard_answers(tmp_path):
    from ray.cluster_utils import Cluster

    from biomatch.dedup import Gallery
    from biomatch.dedup.cluster import DistributedGallery, release_actors

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "node_ip_address": LOOPBACK, "resources": {"biomatch_gallery": 1, "biomatch_shard_000": 1}})
    try:
        worker = c.add_node(num_cpus=2, node_ip_address=LOOPBACK,
                            resources={"biomatch_shard_001": 1, "biomatch_shard_002": 1})
        c.wait_for_nodes()
        ray.init(address=c.address, _node_ip_address=LOOPBACK, include_dashboard=False, log_to_driver=False)
        path = tmp_path / "g"
        registry = [make_record(f"s{i}", i) for i in range(30)]
        with Gallery.create(path, n_shards=2) as g:
            g.bulk_enroll(registry)
        d = DistributedGallery.open(path)
        try:
            node = {name: ray.get(a.node_id.remote()) for name, a in d.actors().items()}
            assert node["shard-001"] == worker.node_id
            assert node["shard-000"] != worker.node_id and node["writer"] == node["shard-000"]
            assert d.add_shard() == 3
            assert ray.get(d.actors()["shard-002"].node_id.remote()) == worker.node_id
            new = [make_record(f"new{i}", 100 + i) for i in range(6)] + [make_record("back2", 2, 1)]
            with Gallery.create(tmp_path / "one", n_shards=1) as one:
                one.bulk_enroll(registry)
                for rec in new:
                    a, b = d.enroll(rec), one.enroll(rec)
                    assert (a.decision, a.candidates, a.enrolled) == (b.decision, b.candidates, b.enrolled)
                for p in (make_record("q", 4, 2), make_record("q", 103, 1), make_record("q", 777)):
                    a, b = d.deduplicate(p), one.deduplicate(p)
                    assert (a.decision, a.candidates, a.work) == (b.decision, b.candidates, b.work)
            assert d.stats()["subjects"] == 36
        finally:
            d.close()
            release_actors(path)
    finally:
        ray.shutdown()
        c.shutdown()
