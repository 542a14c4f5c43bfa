"""Issue 13, items 7-9: manifests and subject ids, untyped errors on paths, the demo cache.

Every test here failed before its fix: a header guessed from a bad first row, a traceback on a
NUL byte or an oversized CSV field, concurrent runs of one manifest reporting errors, unsafe
subject ids accepted and printed raw, OSError escaping ``formats.save`` and ``synth fvc``, and a
world-readable pickle cache that ran whatever replaced it.
"""

from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from biomatch.cli import main
from biomatch.errors import BiomatchError, DuplicateSubjectError, InvalidInputError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """One impression of fingers 2 and 7 of three generated people: ``id_<person>_<pos>.png``."""
    import cv2

    from biomatch.datasets.synthetic import impression, master

    folder = tmp_path_factory.mktemp("fault_imgs")
    for person in range(3):
        for pos in (2, 7):
            img = impression(master(3000 + person * 16 + pos), seed=0).image
            cv2.imwrite(str(folder / f"id_{person}_{pos}.png"), np.asarray(img))
    return folder


@pytest.fixture
def gallery(tmp_path):
    g = tmp_path / "g"
    assert main(["gallery", "create", str(g), "--retrieval", "exhaustive"]) == 0
    return g


def _manifest(tmp_path, text: str) -> Path:
    m = tmp_path / "m.csv"
    m.write_text(text, encoding="utf-8")
    return m


# --------------------------------------------------------------------------- 7. manifests


@pytest.mark.parametrize("position", ["-1", "1.5", "a", "0", "11"])
def test_headerless_manifest_bad_first_position_is_a_row_error(tmp_path, gallery, images, capsys, position):
    """A first row that looks like data is data: its bad position is reported with its line."""
    m = _manifest(tmp_path, f"S1,{position},{images / 'id_0_2.png'},500\nS2,2,{images / 'id_1_2.png'},500\n")
    assert main(["gallery", "enroll", str(gallery), str(m), "--quiet"]) == 2
    cap = capsys.readouterr()
    assert "line 1" in cap.err and "position" in cap.err and repr(position) in cap.err
    assert "0 records" not in cap.out


def test_bad_position_later_names_its_line(tmp_path, images):
    from biomatch.cli.inputs import read_input

    m = _manifest(tmp_path, f"subject_id,position,path,dpi\nS1,2,{images / 'id_0_2.png'},500\n"
                            f"S2,x,{images / 'id_1_2.png'},500\n")
    with pytest.raises(InvalidInputError, match="line 3"):
        read_input(m, None)


@pytest.mark.parametrize("header", ["subject_id,position,path,dpi", "Subject ID, Position , Path,DPI",
                                    "subject,finger,image", "id,finger_position,file,resolution"])
def test_header_is_recognised_by_its_column_names(tmp_path, images, header):
    from biomatch.cli.inputs import read_input

    m = _manifest(tmp_path, f"{header}\nS1,2,{images / 'id_0_2.png'},500\n")
    assert [(s, list(f)) for s, f, _ in read_input(m, 500)] == [("S1", [2])]


def test_unknown_header_words_are_a_row_error(tmp_path, images):
    from biomatch.cli.inputs import read_input

    m = _manifest(tmp_path, f"who,where,what\nS1,2,{images / 'id_0_2.png'},500\n")
    with pytest.raises(InvalidInputError, match="line 1"):
        read_input(m, 500)


def test_nul_in_a_path_is_a_row_error(tmp_path, gallery, images, capsys):
    m = _manifest(tmp_path, f"S1,2,{images / 'id_0_2.png'},500\nS2,2,{images}/id\x00_1_2.png,500\n")
    assert main(["gallery", "enroll", str(gallery), str(m), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "path" in err and "NUL" in err and "\x00" not in err


def test_nul_in_a_subject_id_is_a_row_error(tmp_path, images):
    from biomatch.cli.inputs import read_input

    m = _manifest(tmp_path, f"S\x001,2,{images / 'id_0_2.png'},500\n")
    with pytest.raises(InvalidInputError, match="line 1.*subject_id"):
        read_input(m, None)


def test_field_over_the_csv_limit_is_a_row_error(tmp_path, gallery, images, capsys):
    m = _manifest(tmp_path, f"subject_id,position,path\nS1,2,{images / 'id_0_2.png'}\n"
                            f"S2,2,{'x' * 131_073}.png\n")
    assert main(["gallery", "enroll", str(gallery), str(m), "--dpi", "500", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "131072" in err and len(err) < 1000
    assert main(["gallery", "stats", str(gallery), "--json"]) == 0
    assert '"subjects": 0' in capsys.readouterr().out  # a bad row stops the run before anything is enrolled


def test_subject_ids_from_a_folder_are_checked(tmp_path, images):
    import shutil

    from biomatch.cli.inputs import read_input

    folder = tmp_path / "f"
    folder.mkdir()
    shutil.copy(images / "id_0_2.png", folder / "bad\u202eid_2.png")
    with pytest.raises(InvalidInputError, match="subject_id") as exc:
        read_input(folder, 500)
    assert "\u202e" not in str(exc.value)


class _StaleContains:
    """A gallery whose ``in`` answers before another process enrolled the subject."""

    def __init__(self, g):
        self._g = g

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._g.close()

    def __contains__(self, subject_id):
        return False

    def __getattr__(self, name):
        return getattr(self._g, name)


def test_subject_enrolled_by_another_run_meanwhile_counts_as_skipped(tmp_path, gallery, images, capsys):
    """Deterministic form of the race: the check said 'not enrolled', the enrolment says it is."""
    from biomatch.cli.gallery import run_records as _run
    from biomatch.dedup.gallery import Gallery

    m = _manifest(tmp_path, "".join(f"id_{p},{pos},{images / f'id_{p}_{pos}.png'},500\n"
                                    for p in range(3) for pos in (2, 7)))
    assert main(["gallery", "enroll", str(gallery), str(m), "--quiet"]) == 0
    capsys.readouterr()
    args = SimpleNamespace(path=gallery, source=m, dpi=None, quiet=True, accept_review=False)
    code = _run(args, True, lambda path, read_only: _StaleContains(Gallery.open(path, read_only=read_only)))
    out = capsys.readouterr().out
    assert code == 0 and "ERROR" not in out
    assert "skipped (already enrolled) 3; errors 0" in out


def test_two_concurrent_runs_of_one_manifest(tmp_path, gallery, images):
    m = _manifest(tmp_path, "subject_id,position,path,dpi\n" + "".join(
        f"id_{p},{pos},{images / f'id_{p}_{pos}.png'},500\n" for p in range(3) for pos in (2, 7)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "biomatch", "gallery", "enroll", str(gallery), str(m), "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, (out, err)
        assert "ERROR" not in out and "Traceback" not in err
    enrolled = sum(line.split("\t")[2] == "enrolled" for o, _ in outs for line in o.splitlines()[1:-1])
    skipped = sum(int(o.split("skipped (already enrolled) ")[1].split(";")[0]) for o, _ in outs)
    assert enrolled == 3 and enrolled + skipped == 6
    assert all("gallery holds 3 subjects" in o for o, _ in outs)


# --------------------------------------------------------------------------- 7. subject ids

_UNSAFE = {
    "ESC (terminal escape)": "S1\x1b[2J",
    "DEL": "S1\x7f",
    "C1 NEL": "S1\x85",
    "C1 CSI": "S1\x9b2J",
    "bidi override RLO": "S1\u202e",
    "bidi isolate LRI": "S1\u2066x\u2069",
    "zero-width space": "S\u200b1",
    "zero-width joiner": "S\u200d1",
    "BOM": "\ufeffS1",
    "line separator": "S1\u2028",
    "paragraph separator": "S1\u2029",
    "lone surrogate": "S1\ud800",
    "noncharacter": "S1\ufffe",
    "unassigned": "S1\u0378",
    "tag character": "S1\U000e0041",
}


@pytest.mark.parametrize("subject_id", list(_UNSAFE.values()), ids=list(_UNSAFE))
def test_unsafe_subject_ids_are_refused(subject_id):
    from biomatch.datasets.synthetic import template_impressions
    from biomatch.dedup import Enrolment

    with pytest.raises(InvalidInputError, match="subject_id") as exc:
        Enrolment(subject_id, {2: template_impressions(5, 1)[0]})
    text = str(exc.value)
    assert text.isprintable() and "U+" in text  # names the character, never prints it raw


@pytest.mark.parametrize("subject_id", ["S001", "José Ñúñez", "李小龍", "O'Brien-Smith", "a b", "Ελένη",
                                        "\u3000山田\u3000花子", "e\u0301"])
def test_ordinary_subject_ids_are_kept_unchanged(subject_id):
    from biomatch.datasets.synthetic import template_impressions
    from biomatch.dedup import Enrolment

    assert Enrolment(subject_id, {2: template_impressions(5, 1)[0]}).subject_id == subject_id  # not normalised


def test_printed_ids_are_escaped():
    """A legacy id stored before the check cannot drive the terminal from a report line."""
    from biomatch.cli.gallery import _line

    top = SimpleNamespace(subject_id="old\x1b]0;pwned\x07\u202eid", score=7.5)
    report = SimpleNamespace(subject_id="new\tid\\x", decision="DUPLICATE", enrolled=False, candidates=[top])
    line = _line(report)
    fields = line.split("\t")
    assert len(fields) == 5 and all(f.isprintable() for f in fields)
    assert fields[0] == "new\\x09id\\\\x" and fields[3] == "old\\x1b]0;pwned\\x07\\u202eid"


def test_printable_id_keeps_ordinary_ids():
    from biomatch.dedup.records import printable_id

    for sid in ("S001", "José", "李小龍", "a b"):
        assert printable_id(sid) == sid


# --------------------------------------------------------------------------- 8. untyped errors


def _template():
    from biomatch.datasets.synthetic import template_impressions

    return template_impressions(5, 1)[0]


@pytest.mark.parametrize("where", ["dir", "no_parent", "nul"])
def test_template_save_bad_path_is_typed(tmp_path, where):
    from biomatch.formats import save

    path = {"dir": tmp_path, "no_parent": tmp_path / "missing" / "t.bmt", "nul": str(tmp_path / "a\x00b.bmt")}[where]
    with pytest.raises(BiomatchError, match="path") as exc:
        save(_template(), path)
    assert "\x00" not in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary file left


def test_template_save_full_disk_is_typed(tmp_path, monkeypatch):
    import errno

    import biomatch._io
    from biomatch.errors import FileAccessError
    from biomatch.formats import save

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(biomatch._io, "write_private_atomic", full)
    with pytest.raises(FileAccessError, match="path: cannot write .*No space left"):
        save(_template(), tmp_path / "t.bmt")


@pytest.mark.parametrize("where", ["dir", "missing", "nul"])
def test_template_load_bad_path_is_typed(tmp_path, where):
    from biomatch.formats import load, load_native

    path = {"dir": tmp_path, "missing": tmp_path / "missing.bmt", "nul": str(tmp_path / "a\x00b.bmt")}[where]
    for fn in (load_native, load):
        with pytest.raises(BiomatchError):
            fn(path)


def test_template_save_roundtrip_is_private(tmp_path):
    from biomatch.formats import load_native, save

    t = _template()
    save(t, tmp_path / "t.bmt")
    assert stat.S_IMODE((tmp_path / "t.bmt").stat().st_mode) == 0o600 and load_native(tmp_path / "t.bmt") == t


def test_synth_fvc_into_an_existing_file_is_a_one_line_error(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("keep me")
    assert main(["synth", "fvc", str(f), "--fingers", "1", "--impressions", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("biomatch: error:") and err.count("\n") == 1 and str(f) in err
    assert f.read_text() == "keep me"


def test_synth_fvc_library_refuses_a_file(tmp_path):
    from biomatch.datasets.synthetic import write_fvc

    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidInputError, match="out"):
        write_fvc(tmp_path / "file", 1, 1, 0)


def test_demo_out_is_an_existing_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("")
    assert main(["demo", "dedup", "--datasets", str(tmp_path / "none"), "--out", str(f), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("biomatch: error: --out")


def test_cli_turns_oserror_on_a_user_path_into_one_line(tmp_path, capsys, monkeypatch):
    """The last line of defence: an OSError from any command is one line and exit 2, not a traceback."""
    import biomatch.cli as cli

    def fail(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(cli.synth, "cmd_synth_fvc", fail)
    assert cli.main(["synth", "fvc", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Permission denied" in err and str(tmp_path / "x") in err


# --------------------------------------------------------------------------- 9. the demo cache


def _cache_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if p.name.startswith("templates_"))


@pytest.fixture(scope="module")
def cached(images, tmp_path_factory):
    """The demo's extraction of three images into a fresh cache, and its result."""
    from biomatch.cli.demo_data import _extract_all

    cache = tmp_path_factory.mktemp("demo") / "cache"  # created by the demo
    paths = sorted(str(p) for p in images.glob("id_*_2.png"))
    first = _extract_all(paths, 500.0, cache, quiet=True)
    (f,) = _cache_files(cache)
    return paths, cache, f, f.read_bytes(), first


def test_demo_cache_is_private_npz_without_pickle(cached):
    from biomatch.template import Template

    paths, cache, f, _, first = cached
    assert set(first) == set(paths) and stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.stat().st_mode) & 0o077 == 0
    with np.load(f, allow_pickle=False) as z:  # a data format: no object arrays
        arrays = {k: z[k] for k in z.files}
    assert all(a.dtype != object for a in arrays.values())
    assert not any(p.suffix == ".pkl" for p in cache.iterdir())
    assert all(isinstance(first[p], Template) and len(first[p]) > 0 for p in paths)


def test_demo_cache_is_read_back(cached, capsys):
    from biomatch.cli.demo_data import _extract_all

    paths, cache, f, _, first = cached
    again = _extract_all(paths, 500.0, cache, quiet=True)
    assert "read from the cache" in capsys.readouterr().out
    assert again == first


def _rebuilt(cached, content: bytes, capsys, caplog):
    from biomatch.cli.demo_data import _extract_all

    paths, cache, f, good, first = cached
    f.write_bytes(content)
    try:
        again = _extract_all(paths, 500.0, cache, quiet=True)
        assert again == first
        assert "read from the cache" not in capsys.readouterr().out
        assert any("cache" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    finally:
        f.write_bytes(good)


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_demo_cache_replaced_by_a_pickle_is_rebuilt_not_run(cached, tmp_path, capsys, caplog):
    marker = tmp_path / "pwned"
    _rebuilt(cached, pickle.dumps({"x": _Payload(str(marker))}), capsys, caplog)
    assert not marker.exists()


def test_demo_cache_corrupted_is_rebuilt(cached, capsys, caplog):
    good = cached[3]
    _rebuilt(cached, good[: len(good) // 2], capsys, caplog)  # truncated zip


def test_demo_cache_with_a_corrupt_template_is_rebuilt(cached, capsys, caplog, tmp_path):
    import io

    _, _, f, good, _ = cached
    with np.load(io.BytesIO(good), allow_pickle=False) as z:
        arrays = {k: z[k].copy() for k in z.files}
    blobs = next(k for k, a in arrays.items() if a.dtype == np.uint8)
    arrays[blobs][40] ^= 0xFF  # a flipped byte inside the first template: its CRC fails
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _rebuilt(cached, buf.getvalue(), capsys, caplog)
