"""Bulk import of an existing registry's templates: layouts, resume, typed errors, SIGKILL at random points."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from dedup_util import finger_seed

CHILD = Path(__file__).resolve().parent / "_import_child.py"
POSITIONS = (2, 7)


def _template(person: int, position: int, impression: int = 0):
    from biomatch.datasets.synthetic import template_impressions

    return template_impressions(finger_seed(person, position), impression + 1)[impression]


def _write_folder(root: Path, persons, positions=POSITIONS) -> Path:
    """``root/p<i>/<position>.bmt`` native files."""
    from biomatch.formats import save

    for i in persons:
        d = root / f"p{i}"
        d.mkdir(parents=True)
        for p in positions:
            save(_template(i, p), d / f"{p:02d}.bmt")
    return root


def _cli(*args) -> tuple[int, str, str]:
    import contextlib
    import io

    from biomatch.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def test_import_folder_records_and_manifests_then_resume(tmp_path):
    from biomatch.dedup import Gallery
    from biomatch.formats import dump, load
    from biomatch.template import FingerView

    src = _write_folder(tmp_path / "src", range(12))
    Gallery.create(tmp_path / "g").close()
    code, out, _ = _cli("gallery", "import", tmp_path / "g", src, "--batch", "5", "--quiet")
    assert code == 0 and "imported 12 subjects" in out
    with Gallery.open(tmp_path / "g") as g:
        st = g.stats()
        assert st["subjects"] == 12 and st["fingers"] == 24 and g.check() == []
        assert g.identify({p: _template(7, p, 1) for p in POSITIONS}, k=1)[0].subject_id == "p7"
    # a multi-finger ISO record per subject (ISO carries no extraction hash: a gallery of its own)
    iso = tmp_path / "iso"
    iso.mkdir()
    for i in range(100, 104):
        views = [FingerView(_template(i, p), position=p) for p in POSITIONS]
        (iso / f"p{i}.iso").write_bytes(dump(views, "iso19794-2:2011"))
    Gallery.create(tmp_path / "gi").close()
    assert _cli("gallery", "import", tmp_path / "gi", iso, "--quiet")[0] == 0
    with Gallery.open(tmp_path / "gi") as g:
        assert g.stats()["fingers"] == 8 and g.check() == []
        probe = {p: load(dump(_template(101, p, 1), "iso19794-2:2011")) for p in POSITIONS}
        assert g.identify(probe, k=1)[0].subject_id == "p101"
    code, _, err = _cli("gallery", "import", tmp_path / "g", iso, "--quiet")  # the generations differ
    assert code == 2 and "extraction parameter hash" in err
    # a re-run without --resume refuses the enrolled subjects; with it, only the new ones go in
    _write_folder(src, range(12, 15))
    code, _, err = _cli("gallery", "import", tmp_path / "g", src, "--quiet")
    assert code == 2 and "already enrolled" in err and "--resume" in err
    code, out, _ = _cli("gallery", "import", tmp_path / "g", src, "--resume", "--quiet")
    assert code == 0 and "imported 3 subjects" in out and "skipped (already enrolled) 12" in out
    # manifests: CSV (with a header) and JSONL, relative paths
    man = tmp_path / "m.csv"
    man.write_text("subject_id,position,path\n" + "".join(f"q{i},{p},src/p{i}/{p:02d}.bmt\n" for i in range(3)
                                                           for p in POSITIONS))
    jl = tmp_path / "m.jsonl"
    jl.write_text("".join(json.dumps({"subject_id": f"r{i}", "position": p, "path": f"src/p{i}/{p:02d}.bmt"}) + "\n"
                          for i in range(3, 5) for p in POSITIONS))
    assert _cli("gallery", "import", tmp_path / "g", man, "--quiet")[0] == 0
    assert _cli("gallery", "import", tmp_path / "g", jl, "--quiet")[0] == 0
    with Gallery.open(tmp_path / "g") as g:
        assert g.stats()["subjects"] == 20 and "q2" in g and "r4" in g and g.check() == []


def test_bad_input_names_the_file_and_field_and_writes_no_half_batch(tmp_path):
    from biomatch.dedup import Gallery

    src = _write_folder(tmp_path / "src", range(9))
    Gallery.create(tmp_path / "g").close()
    bad = src / "p0" / "11.bmt"
    bad.write_bytes(b"x")
    code, _, err = _cli("gallery", "import", tmp_path / "g", src, "--quiet")
    assert code == 2 and re.search(r"11\.bmt.*, position: expected an ISO finger position 1-10", err)
    bad.unlink()
    man = tmp_path / "m.csv"
    man.write_text("a,2,x.bmt\nb,two,y.bmt\n")
    code, _, err = _cli("gallery", "import", tmp_path / "g", man, "--quiet")
    assert code == 2 and "MANIFEST line 2, position: expected an ISO finger position 1-10, got 'two'" in err
    # a damaged file in the 2nd batch: the 1st batch is committed, nothing of the 2nd
    target = src / "p5" / "07.bmt"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    code, _, err = _cli("gallery", "import", tmp_path / "g", src, "--batch", "4", "--quiet")
    assert code == 2 and re.search(r"p5/07\.bmt.*CRC32", err) and "4 subjects were committed" in err
    assert err.count("byte offset") == 1, err  # the file's name added, the offset not repeated
    with Gallery.open(tmp_path / "g") as g:
        assert g.stats()["subjects"] == 4 and g.check() == []
    _write_folder(tmp_path / "fix", [5])
    target.write_bytes((tmp_path / "fix" / "p5" / "07.bmt").read_bytes())
    code, out, _ = _cli("gallery", "import", tmp_path / "g", src, "--batch", "4", "--resume", "--quiet")
    assert code == 0 and "imported 5 subjects" in out
    with Gallery.open(tmp_path / "g") as g:
        assert g.stats()["subjects"] == 9 and g.check() == []


def _run_and_kill(src: Path, path: Path, rng: random.Random, batch: int) -> list[int]:
    proc = subprocess.Popen([sys.executable, str(CHILD), str(src), str(path), str(batch), "--resume"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    first = ""
    if rng.random() < 0.75:  # mostly after a first acknowledgement, however slow the machine is
        first = proc.stdout.readline()
    time.sleep(rng.uniform(0.0, 0.4))  # then anywhere: reading, coding, inside a transaction, between them
    os.kill(proc.pid, signal.SIGKILL)
    out, err = first + proc.stdout.read(), proc.stderr.read()
    proc.wait()
    acks = [int(line.split()[1]) for line in out.split("\n") if line.startswith("ack ")]
    assert proc.returncode == -signal.SIGKILL or "done" in out, err[-2000:]
    return acks


def test_sigkill_during_import_keeps_acknowledged_batches_and_resume_enrols_each_once(tmp_path):
    from biomatch.dedup import Gallery

    n, batch = 1500, 30
    src = _write_folder(tmp_path / "src", range(n))
    order = sorted(d.name for d in src.iterdir())
    path = tmp_path / "g"
    Gallery.create(path).close()
    rng = random.Random(16)
    have, seen = 0, []
    for trial in range(10):
        acks = _run_and_kill(src, path, rng, batch)
        with Gallery.open(path) as g:
            assert g.check() == []
            st = g.stats()
            # whole batches in the source's order (folder names sorted), never half a subject; every
            # acknowledged batch of this run is there (a run resumes: its acks count what was left)
            assert st["fingers"] == 2 * st["subjects"]
            assert st["subjects"] >= have + max(acks, default=0)
            assert st["subjects"] == n or (st["subjects"] - have) % batch == 0
            assert [sid for sid in order if sid in g] == order[:st["subjects"]]
            have = st["subjects"]
            seen.append(have)
    assert any(0 < k < n for k in seen), seen  # kills landed during the load, not only before or after
    out = subprocess.run([sys.executable, str(CHILD), str(src), str(path), str(batch), "--resume"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    with Gallery.open(path) as g:
        st = g.stats()
        assert st["subjects"] == n and st["fingers"] == 2 * n and g.check() == []
        assert all(f"p{i}" in g for i in range(n))
        for i in (0, n // 2, n - 1):
            assert g.identify({p: _template(i, p, 1) for p in POSITIONS}, k=1)[0].subject_id == f"p{i}"


def test_enroll_window_and_threads_are_bounded_before_anything_is_read(tmp_path):
    from biomatch.dedup import Gallery

    Gallery.create(tmp_path / "g").close()
    for flag, value, msg in (("--window", "5000", "an integer in [1, 4096]"), ("--window", "0", "an integer in [1, 4096]"),
                             ("--threads", "300", "an integer in [1, 256]")):
        code, _, err = _cli("gallery", "enroll", tmp_path / "g", tmp_path / "nothing", flag, value)
        assert code == 2 and f"argument {flag}: expected {msg}" in err, err
