"""The face verification protocol (biomatch.evaluate.faces) through `biomatch evaluate faces`."""

import json

from _util import need_dataset


def test_evaluate_faces_on_three_orl_subjects(tmp_path, capsys):
    from biomatch import cli

    orl = need_dataset("faces/orl")
    folder = tmp_path / "faces"
    folder.mkdir()
    for subject in ("s1", "s2", "s3"):  # one subfolder per identity, ten images each
        (folder / subject).symlink_to(orl / subject, target_is_directory=True)
    assert cli.main(["evaluate", "faces", str(folder), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["n_images"] == 30 and s["failed_to_detect"] == 0
    assert s["n_genuine"] + len(s["failures"]) > 0 and s["n_impostor"] > 0
    # three clearly different people, frontal photos: the protocol must separate them
    assert s["eer"] <= 0.05, s
