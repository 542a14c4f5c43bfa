"""Issue 17, key rotation and kills: re-wrap, re-encryption resumed after an interruption or a
SIGKILL, readers and writers of other processes meanwhile, SIGKILLed enrolments into an
encrypted gallery."""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import sys
import json
import struct
import textwrap
import time
from pathlib import Path

import pytest

from dedup_util import make_record

CHILD = Path(__file__).resolve().parent / "_child.py"
POSITIONS = (2, 7)  # as _child.BULK_POSITIONS


@pytest.fixture
def keys(tmp_path):
    from biomatch.dedup import KeyFile
    from biomatch.dedup.encryption import generate_key_file

    for name in ("k1", "k2"):
        generate_key_file(tmp_path / name)
    return KeyFile(tmp_path / "k1"), KeyFile(tmp_path / "k2")


def _under(path: Path) -> dict:
    """{DEK id: sealed values} over the gallery's stores (read with plain SQLite)."""
    import sqlite3

    from biomatch.dedup.encryption import sealed_key_id

    out: dict = {}
    for db in sorted(path.glob("shards/*/store.sqlite")):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        for sql in ("SELECT template FROM fingers", "SELECT metadata FROM subjects",
                    "SELECT face FROM subjects WHERE face IS NOT NULL"):
            for (blob,) in con.execute(sql):
                k = sealed_key_id(blob)
                out[k] = out.get(k, 0) + 1
        con.close()
    return out


def _gallery(path, key, persons=range(20), shards=2):
    from biomatch.dedup import Gallery

    with Gallery.create(path, key=key, n_shards=shards) as g:
        g.bulk_enroll([make_record(f"p{i}", i, 0, POSITIONS, metadata={"n": i}) for i in persons])


def _top(g, person):
    return g.identify(make_record("probe", person, 1, POSITIONS), k=1)[0].subject_id


def test_rewrap_is_instant_and_swaps_the_key(tmp_path, keys):
    from biomatch.dedup import Gallery, GalleryKeyError, rotate_key

    k1, k2 = keys
    path = tmp_path / "g"
    _gallery(path, k1)
    before = _under(path)
    out = rotate_key(path, k1, k2)
    assert out["rewrapped"] and out["kek_id"] == k2.key_id and out["data_keys"] == ["dek-1"]
    assert _under(path) == before  # nothing in the stores changed
    with pytest.raises(GalleryKeyError):
        Gallery.open(path, key=k1)
    with Gallery.open(path, key=k2) as g:
        assert _top(g, 5) == "p5" and g.check() == []
    # a re-run after a kill that came just after the manifest was written: the new key is current
    assert not rotate_key(path, k1, k2)["rewrapped"]


def test_reencryption_interrupted_stays_readable_and_resumes(tmp_path, keys):
    from biomatch.dedup import Gallery, rotate_key

    k1, k2 = keys
    path = tmp_path / "g"
    _gallery(path, k1, persons=range(40))
    reader = Gallery.open(path, key=k1, read_only=True, cache_bytes=0)  # holds dek-1 only
    writer = Gallery.open(path, key=k1)

    class Stop(Exception):
        pass

    def stop(shard, rows):
        raise Stop

    try:
        with pytest.raises(Stop):  # interrupted after its first batch
            rotate_key(path, k1, reencrypt=True, batch_size=7, progress=stop)
        under = _under(path)
        assert set(under) == {1, 2}  # half-rotated: records under both data keys
        with Gallery.open(path, key=k1, cache_bytes=0) as g:
            assert g.encryption["data_keys"] == ["dek-1", "dek-2"] and g.encryption["reencryption"]
            assert [_top(g, p) for p in (0, 39)] == ["p0", "p39"] and g.check() == []
        # a writer opened before the rotation seals under the new data key
        assert writer.enroll(make_record("late", 500, 0, POSITIONS)).enrolled
        assert _under(path)[2] == under[2] + 3  # its two fingers and its metadata
        # a reader opened before the rotation reads the records under the new key (re-reads the key set)
        assert [_top(reader, p) for p in (0, 39, 500)] == ["p0", "p39", "late"]
        out = rotate_key(path, k1, reencrypt=True, batch_size=7)  # resumes
        assert out["data_keys"] == ["dek-2"] and out["reencryption"] is None and out["reencrypted_rows"] > 0
        assert set(_under(path)) == {2}
        assert [_top(reader, p) for p in (3, 500)] == ["p3", "late"]
        assert writer.enroll(make_record("later", 501, 0, POSITIONS)).enrolled
        # then the KEK: running processes keep their data keys; new opens need the new key
        assert rotate_key(path, k1, k2)["rewrapped"]
        assert _top(reader, 7) == "p7" and writer.enroll(make_record("last", 502, 0, POSITIONS)).enrolled
    finally:
        reader.close()
        writer.close()
    with Gallery.open(path, key=k2) as g:
        assert g.check() == [] and g.stats()["subjects"] == 43
        # the sealed code index files were re-sealed too: read without a rebuild
        assert not g._shards[0].index_rebuilt and g._shards[0]._retrieval.rejected is None
    assert set(_under(path)) == {2}
    index = path / "shards" / "000" / "index"
    version = json.loads((index / "manifest.json").read_text())["current"]
    sealed = [f for f in (index / version).iterdir()]
    assert sealed and {struct.unpack_from(">I", f.read_bytes(), 3)[0] for f in sealed} == {2}


def test_reencryption_reseals_the_code_index_files(tmp_path, keys):
    """With no gallery open, a re-encryption re-seals each shard's saved code index under the new
    data key before the old one is dropped: the next open reads it, no rebuild."""
    from biomatch.dedup import Gallery, rotate_key

    k1, _ = keys
    path = tmp_path / "g"
    _gallery(path, k1, persons=range(30))
    with Gallery.open(path, key=k1) as g:
        for s in g._shards:
            s.checkpoint()  # the index files saved, sealed under dek-1

    def dek_ids() -> set:
        out = set()
        for index in path.glob("shards/*/index"):
            version = json.loads((index / "manifest.json").read_text())["current"]
            out |= {struct.unpack_from(">I", f.read_bytes(), 3)[0] for f in (index / version).iterdir()}
        return out

    assert dek_ids() == {1}
    assert rotate_key(path, k1, reencrypt=True)["data_keys"] == ["dek-2"]
    assert dek_ids() == {2}
    with Gallery.open(path, key=k1) as g:
        assert all(not s.index_rebuilt and s._retrieval.rejected is None for s in g._shards)
        assert all(s._retrieval._loaded_version is not None for s in g._shards)
        assert [_top(g, p) for p in (0, 29)] == ["p0", "p29"]


_ROTATE = textwrap.dedent("""
    import sys
    from biomatch.dedup import KeyFile, rotate_key
    path, key = sys.argv[1], KeyFile(sys.argv[2])
    print("ready", flush=True)
    rotate_key(path, key, reencrypt=True, batch_size=2, progress=lambda s, n: print(s, n, flush=True))
    print("done", flush=True)
""")


def test_sigkill_during_reencryption(tmp_path, keys):
    from biomatch.dedup import Gallery, rotate_key

    k1, _ = keys
    path = tmp_path / "g"
    _gallery(path, k1, persons=range(150))
    rng = random.Random(17)
    killed = 0
    for trial in range(6):
        proc = subprocess.Popen([sys.executable, "-c", _ROTATE, str(path), str(k1.path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        # Kill after a random number of committed batches (at most 25 of the ~225 a rotation of this
        # gallery takes in batches of 2, so six trials stay inside one rotation however loaded the
        # machine is), a few milliseconds into the next ones.
        seen = "".join(proc.stdout.readline() for _ in range(rng.randint(1, 25)))
        time.sleep(rng.uniform(0.0, 0.005))
        proc.kill()
        out = seen + proc.stdout.read()
        proc.wait()
        killed += "done" not in out
        with Gallery.open(path, key=k1, cache_bytes=0) as g:
            assert g.check() == [] and g.stats()["subjects"] == 150
            assert [_top(g, p) for p in (trial, 149 - trial)] == [f"p{trial}", f"p{149 - trial}"]
    assert killed == 6
    out = rotate_key(path, k1, reencrypt=True)
    assert out["reencryption"] is None and len(out["data_keys"]) == 1
    assert set(_under(path)) == {int(out["active_data_key"][4:])}


def test_sigkill_during_encrypted_enrolment(tmp_path, keys):
    """As test_durability, on an encrypted gallery (the child finds its key in BIOMATCH_GALLERY_KEY)."""
    from biomatch.dedup import Gallery

    k1, _ = keys
    path = tmp_path / "g"
    Gallery.create(path, key=k1).close()
    env = dict(os.environ, BIOMATCH_GALLERY_KEY=base64.b64encode(k1.path.read_bytes()).decode())
    rng = random.Random(99)
    acked: list = []
    unprinted = 0
    for trial in range(6):
        first = trial * 1000
        proc = subprocess.Popen([sys.executable, str(CHILD), "bulk", str(path), str(first), "300"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        first_ack = proc.stdout.readline()
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        out = first_ack + proc.stdout.read()
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        got = [line for line in out.split("\n") if line]
        acked += got
        with Gallery.open(path, key=k1) as g:
            assert g.check() == []
            st = g.stats()
            extra = st["subjects"] - len(acked) - unprinted
            assert extra in (0, 1)
            unprinted += extra
            assert st["fingers"] == 2 * st["subjects"]
            assert all(sid in g for sid in acked)
            last = int(got[-1][1:])
            assert _top(g, last) == f"p{last}"
    assert set(_under(path)) == {1}
