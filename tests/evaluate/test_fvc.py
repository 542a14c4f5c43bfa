"""The FVC protocol: pair counts, failed extractions, timing fields, with fake extractor/matcher."""

import json

import numpy as np
import pytest
from _util import need_dataset

from biomatch.errors import DatasetError, InvalidInputError
from biomatch.evaluate.fvc import FvcResult, StderrProgress, fvc_pairs, list_fvc_images, run_fvc


def make_folder(root, fingers=10, impressions=8, ext=".tif"):
    for f in range(101, 101 + fingers):
        for i in range(1, impressions + 1):
            (root / f"{f}_{i}{ext}").write_bytes(b"fake")
    return root


def fake_extract(path, dpi):
    finger, imp = (int(x) for x in path.stem.split("_"))
    return (finger, imp)


def fake_match_many(probe, candidates):
    # Genuine 0.5 + impression-dependent spread; impostors below 0.5 but two of them high.
    out = []
    for c in candidates:
        if c[0] == probe[0]:
            out.append(0.5 + 0.05 * abs(c[1] - probe[1]))
        else:
            out.append(0.6 if (probe, c) in {((101, 1), (102, 1)), ((103, 2), (104, 5))} else 0.1)
    return np.array(out)


@pytest.fixture
def b_set(tmp_path):
    return make_folder(tmp_path)


def test_counts_match_the_dataset_readme(b_set):
    images = list_fvc_images(b_set)
    assert len(images) == 80 and images[0].name == "101_1" and images[-1].name == "110_8"
    pairs = fvc_pairs(images)
    assert len(pairs["genuine"]) == 280  # 10 x 28
    assert len(pairs["impostor"]) == 2880  # 80 x 72 / 2
    assert len(pairs["impostor_fvc"]) == 45  # 10 x 9 / 2
    for p in pairs.values():
        assert np.all(p[:, 0] < p[:, 1])
    # the standard impostor set is first impressions only and inside the all-impostor set
    assert all(images[i].impression == 1 and images[j].impression == 1 for i, j in pairs["impostor_fvc"])
    all_imp = {tuple(p) for p in pairs["impostor"]}
    assert all(tuple(p) in all_imp for p in pairs["impostor_fvc"])


def test_run_fvc_scores_and_metrics(b_set):
    calls = []
    r = run_fvc(b_set, 500, extract=fake_extract, match_many=fake_match_many,
                progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert (r.n_genuine, r.n_impostor, r.n_impostor_fvc) == (280, 2880, 45)
    assert r.genuine.shape == (280,) and r.impostor.shape == (2880,)
    assert np.all(r.genuine >= 0.5)
    # two impostors (one of them in the standard set) score above every genuine pair at 0.5
    assert r.zerofmr > 0 and r.eer > 0
    assert r.fmr100 == 0.0  # 2 / 2880 < 1%
    assert r.eer_fvc > 0  # 101_1 vs 102_1 is a standard impostor
    assert calls[:1] == [("extract", 1, 80)] and calls[-1] == ("match", 79, 79)
    assert r.extract_ms_median >= 0 and r.match_us_median >= 0
    assert r.n_failed_extractions == 0


def test_summary_keys_and_state_round_trip(b_set):
    r = run_fvc(b_set, 500, extract=fake_extract, match_many=fake_match_many)
    s = r.summary()
    for key in ("eer", "fmr100", "fmr1000", "zerofmr", "eer_fvc", "n_genuine", "n_impostor",
                "extract_ms_median", "match_us_median"):
        assert key in s
    json.dumps(s)
    back = FvcResult.from_state(json.loads(json.dumps(r.to_state())))
    assert back.summary() == s
    np.testing.assert_array_equal(back.impostor, r.impostor)
    rows = list(r.score_rows())
    assert len(rows) == 280 + 2880 and rows[0][:3] == ("genuine", "101_1", "101_2")


def test_failed_extraction_scores_zero_and_is_not_matched(b_set):
    seen = []

    def extract(path, dpi):
        return [] if path.stem == "105_3" else fake_extract(path, dpi)

    def match_many(probe, candidates):
        seen.append(probe)
        seen.extend(candidates)
        return fake_match_many(probe, candidates)

    r = run_fvc(b_set, 500, extract=extract, match_many=match_many)
    assert r.n_failed_extractions == 1
    assert [] not in seen
    k = r.names.index("105_3")
    for kind in ("genuine", "impostor"):
        involved = (r.pairs[kind] == k).any(axis=1)
        assert involved.any() and np.all(r.scores[kind][involved] == 0)


def test_unreadable_image_is_a_failed_extraction(b_set):
    from biomatch.errors import ImageError

    def extract(path, dpi):
        if path.stem == "110_8":
            raise ImageError("path: truncated")
        return fake_extract(path, dpi)

    r = run_fvc(b_set, 500, extract=extract, match_many=fake_match_many)
    assert r.n_failed_extractions == 1 and r.n_genuine == 280


def test_prepare_runs_once_per_usable_template(b_set):
    prepared = []

    def extract(path, dpi):
        return [] if path.stem == "101_1" else fake_extract(path, dpi)

    def prepare(t):
        prepared.append(t)
        return ("prepared", t)

    def match_many(probe, candidates):
        assert probe[0] == "prepared" and all(c[0] == "prepared" for c in candidates)
        return fake_match_many(probe[1], [c[1] for c in candidates])

    r = run_fvc(b_set, 500, extract=extract, prepare=prepare, match_many=match_many)
    assert len(prepared) == 79 and len(set(prepared)) == 79
    assert r.prepare_ms_median >= 0 and "prepare_ms_median" in r.summary()


def test_match_many_result_shape_is_checked(b_set):
    with pytest.raises(InvalidInputError, match="match_many"):
        run_fvc(b_set, 500, extract=fake_extract, match_many=lambda p, c: np.zeros(len(c) + 1))


def test_other_files_ignored_and_other_formats_accepted(tmp_path):
    make_folder(tmp_path, fingers=3, impressions=2, ext=".png")
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "index.png").write_bytes(b"x")
    assert [im.name for im in list_fvc_images(tmp_path)] == ["101_1", "101_2", "102_1", "102_2", "103_1", "103_2"]
    r = run_fvc(tmp_path, 569, extract=fake_extract, match_many=fake_match_many)
    assert (r.n_genuine, r.n_impostor, r.n_impostor_fvc) == (3, 12, 3)


@pytest.mark.parametrize("setup, fragment", [
    (lambda d: None, "found none"),
    (lambda d: make_folder(d, fingers=1, impressions=3), "at least 2 fingers"),
    (lambda d: make_folder(d, fingers=2, impressions=1), "at least 2 impressions"),
    (lambda d: (make_folder(d, 2, 2), (d / "101_1.png").write_bytes(b"x")), "twice"),
])
def test_bad_folders(tmp_path, setup, fragment):
    setup(tmp_path)
    with pytest.raises(DatasetError, match=fragment):
        list_fvc_images(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="folder"):
        run_fvc(tmp_path / "nope", 500, extract=fake_extract, match_many=fake_match_many)


@pytest.mark.parametrize("dpi", [float("nan"), -500, 0, "500"])
def test_bad_dpi(b_set, dpi):
    with pytest.raises(InvalidInputError, match="dpi"):
        run_fvc(b_set, dpi, extract=fake_extract, match_many=fake_match_many)


def test_bad_threads(b_set):
    with pytest.raises(InvalidInputError, match="n_threads"):
        run_fvc(b_set, 500, n_threads=0, extract=fake_extract, match_many=fake_match_many)


def test_progress_is_silent_when_not_a_tty(capsys):
    import io

    buf = io.StringIO()
    p = StderrProgress(buf)
    p("extract", 1, 2)
    p("extract", 2, 2)
    assert buf.getvalue() == ""


def test_progress_line_on_a_tty():
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    buf = Tty()
    p = StderrProgress(buf, label="db1: ")
    p("match", 3, 3)
    assert "db1: match" in buf.getvalue() and "3/3" in buf.getvalue() and buf.getvalue().endswith("\n")


def test_real_fvc_folder_layout():
    folder = need_dataset("fvc2002/db1_b")
    images = list_fvc_images(folder)
    assert len(images) == 80
    pairs = fvc_pairs(images)
    assert (len(pairs["genuine"]), len(pairs["impostor"]), len(pairs["impostor_fvc"])) == (280, 2880, 45)
