"""``biomatch gallery create|enroll|dedup|stats`` on a folder and a manifest of generated images."""

from __future__ import annotations

import numpy as np
import pytest

from biomatch.cli import main


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two impressions of two fingers of three generated people, as PNGs."""
    import cv2

    from biomatch.datasets.synthetic import impression, master

    root = tmp_path_factory.mktemp("imgs")
    enrol, probe = root / "enrol", root / "probe"
    enrol.mkdir()
    probe.mkdir()
    for person in range(3):
        for pos in (2, 7):
            mp_ = master(1000 + person * 16 + pos)
            for imp, folder in ((0, enrol), (1, probe)):
                img = impression(mp_, seed=imp).image
                cv2.imwrite(str(folder / f"id_{person}_{pos}.png"), np.asarray(img))
    return enrol, probe


def test_create_enroll_resume_dedup_stats(tmp_path, images, capsys):
    enrol, probe = images
    g = tmp_path / "g"
    assert main(["gallery", "create", str(g)]) == 0
    assert main(["gallery", "enroll", str(g), str(enrol), "--dpi", "500", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("enrolled") >= 3 and "gallery holds 3 subjects" in out
    assert main(["gallery", "enroll", str(g), str(enrol), "--dpi", "500", "--quiet"]) == 0  # resumable
    assert "skipped (already enrolled) 3" in capsys.readouterr().out
    manifest = tmp_path / "m.csv"
    manifest.write_text("subject_id,position,path,dpi\n" + "".join(
        f"new_{p},{pos},{probe / f'id_{p}_{pos}.png'},500\n" for p in range(3) for pos in (2, 7)))
    assert main(["gallery", "dedup", str(g), str(manifest), "--quiet"]) == 0
    lines = [x.split("\t") for x in capsys.readouterr().out.splitlines() if x.startswith("new_")]
    assert len(lines) == 3 and all(x[1] == "DUPLICATE" and x[3] == f"id_{x[0][4:]}" for x in lines)
    assert main(["gallery", "dedup", str(g), str(manifest), "--quiet", "--processes", "2"]) == 0
    assert [x.split("\t") for x in capsys.readouterr().out.splitlines() if x.startswith("new_")] == lines
    # the same records enrolled through search processes: three duplicates refused, nothing added
    assert main(["gallery", "enroll", str(g), str(manifest), "--processes", "2", "--quiet"]) == 0
    lines = [x.split("\t") for x in capsys.readouterr().out.splitlines() if x.startswith("new_")]
    assert len(lines) == 3 and all(x[1] == "DUPLICATE" and x[3] == f"id_{x[0][4:]}" for x in lines), lines
    assert main(["gallery", "stats", str(g), "--json"]) == 0
    assert '"subjects": 3' in capsys.readouterr().out


def test_typed_errors_exit_2(tmp_path, images, capsys):
    enrol, _ = images
    assert main(["gallery", "stats", str(tmp_path)]) == 2  # not a gallery
    assert main(["gallery", "create", str(tmp_path / "g")]) == 0
    assert main(["gallery", "create", str(tmp_path / "g")]) == 2  # exists
    assert main(["gallery", "enroll", str(tmp_path / "g"), str(enrol)]) == 2  # no --dpi
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "nounderscore.png").write_bytes(b"x")
    assert main(["gallery", "enroll", str(tmp_path / "g"), str(bad), "--dpi", "500"]) == 2
    assert "error" in capsys.readouterr().err


def test_demo_runs_on_generated_identities(tmp_path, capsys):
    """The README's main job, shrunk: enrol, then a stream of returning and new people."""
    from biomatch.cli.demo import run_demo

    assert run_demo(tmp_path / "no-datasets", tmp_path / "out", quiet=True, generated_sizes=(40, 10, 10)) == 0
    out = capsys.readouterr().out
    assert "caught 10 as DUPLICATE" in out and "0 false DUPLICATE" in out


def test_faces_in_folder_and_manifest(tmp_path, images, capsys):
    import shutil
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _util import need_dataset

    photos = need_dataset("faces/photos_a")
    people = sorted(p for p in photos.iterdir() if p.is_dir())[:3]
    enrol, probe = images
    folder = tmp_path / "enrol"
    shutil.copytree(enrol, folder)
    for person, d in enumerate(people):
        shutil.copy(sorted(d.glob("*.jpg"))[0], folder / f"id_{person}_face.jpg")
    g = tmp_path / "g"
    assert main(["gallery", "create", str(g)]) == 0
    code = main(["gallery", "enroll", str(g), str(folder), "--dpi", "500", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 or "FaceQualityError" in out or "refused for enrolment" in out, out
    main(["gallery", "stats", str(g), "--json"])
    import json

    st = json.loads(capsys.readouterr().out)
    assert st["faces"] + out.count("refused for enrolment") == 3
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id_0,face,{sorted(people[0].glob('*.jpg'))[1]}\nid_0,2,{probe / 'id_0_2.png'}\n")
    assert main(["gallery", "dedup", str(g), str(manifest), "--dpi", "500", "--quiet"]) == 0
    assert "id_0\tDUPLICATE" in capsys.readouterr().out


@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_bad_image_fails_its_record_only_whatever_the_extraction_threads(tmp_path, images, capsys, threads):
    import shutil

    enrol, _ = images
    folder = tmp_path / "mixed"
    shutil.copytree(enrol, folder)
    (folder / "id_1_7.png").write_bytes(b"not an image")  # one of person 1's two fingers
    g = tmp_path / "g"
    assert main(["gallery", "create", str(g)]) == 0
    capsys.readouterr()
    assert main(["gallery", "enroll", str(g), str(folder), "--dpi", "500", "--quiet", "--threads", threads]) == 2
    lines = {x.split("\t")[0]: x.split("\t")[1] for x in capsys.readouterr().out.splitlines()
             if x.startswith("id_")}
    assert lines == {"id_0": "UNIQUE", "id_1": "ERROR", "id_2": "UNIQUE"}, lines
