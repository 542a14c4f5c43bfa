"""Score files: formats, subject sources, and clear errors naming file, line and column."""

import numpy as np
import pytest

from biomatch.errors import BiomatchError, InvalidInputError
from biomatch.evaluate.scorefile import read_scores, read_searches


def write(tmp_path, text, name="s.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_label_and_subject_columns(tmp_path):
    s = read_scores(write(tmp_path, "subject,score,label,other\na,0.9,1,x\na,0.1,0,y\nb,0.8,1,z\nb,0.2,0,w\n"))
    assert s.genuine.tolist() == [0.9, 0.8] and s.impostor.tolist() == [0.1, 0.2]
    assert s.genuine_subjects.tolist() == ["a", "b"] and s.n_subjects == 2
    assert s.subject_source == "subject column"


def test_candidate_subject_gives_impostor_pairs(tmp_path):
    s = read_scores(write(tmp_path, "score,label,subject,candidate_subject\n0.9,1,a,a\n0.1,0,a,b\n"))
    assert s.impostor_subjects.tolist() == [["a", "b"]]


def test_biomatch_fvc_scores_csv_is_read_with_fingers_as_subjects(tmp_path):
    text = ("kind,probe,candidate,score\ngenuine,101_1,101_2,0.5\nimpostor,101_1,102_1,0.01\n"
            "genuine,102_1,102_2,0.4\n")
    s = read_scores(write(tmp_path, text))
    assert s.genuine.tolist() == [0.5, 0.4] and s.impostor.tolist() == [0.01]
    assert s.genuine_subjects.tolist() == ["101", "102"] and s.impostor_subjects.tolist() == [["101", "102"]]


def test_without_subjects_comparisons_are_resampled(tmp_path):
    s = read_scores(write(tmp_path, "score,label\n1,1\n0,0\n"))
    assert s.genuine_subjects is None and s.n_subjects == 0 and s.subject_source == ""


@pytest.mark.parametrize("text, fragment", [
    ("label,subject\n1,a\n", "s.csv: expected a column 'score', got columns ['label', 'subject']"),
    ("score,subject\n1,a\n", "s.csv: expected a column 'label' (1 genuine, 0 impostor) or 'kind'"),
    ("score,label\n0.5,1\nnan,0\n", "s.csv: line 3: column 'score': expected a finite number, got 'nan'"),
    ("score,label\n0.5,1\nabc,0\n", "line 3: column 'score': expected a finite number, got 'abc'"),
    ("score,label\n0.5,1\n0.1,2\n", "line 3: column 'label': expected 0 or 1, got '2'"),
    ("score,label\n0.5,1\n0.1,yes\n", "expected 0 or 1, got 'yes'"),
    ("score,label\n0.5,1\n0.4,1\n", "expected at least one impostor (label 0) row, got none in 2 rows"),
    ("score,label\n", "expected at least one data row"),
    ("", "expected a CSV header line"),
    ("score,label\n0.5\n", "line 2: expected 2 fields (column 'label'), got 1"),
    ("kind,score\ngenuine,1\nmaybe,0\n", "column 'kind': expected 'genuine' or 'impostor', got 'maybe'"),
])
def test_bad_files_are_clear(tmp_path, text, fragment):
    with pytest.raises(InvalidInputError) as exc:
        read_scores(write(tmp_path, text))
    assert fragment in str(exc.value)


def test_missing_file(tmp_path):
    with pytest.raises(BiomatchError, match="FILE: expected a CSV file, got .*nope.csv.* which does not exist"):
        read_scores(tmp_path / "nope.csv")


def test_searches(tmp_path):
    text = "probe,candidate,score,mated\np1,a,0.9,1\np1,b,0.2,0\np2,a,0.3,0\np2,b,0.4,0\n"
    o = read_searches(write(tmp_path, text))
    assert o.gallery_size == 2 and o.mate_rank.tolist() == [1] and o.nonmated_top_score.tolist() == [0.4]
    assert read_searches(write(tmp_path, text), gallery_size=10).gallery_size == 10


def test_searches_truncated_lists(tmp_path):
    text = "probe,candidate,score,mated,probe_mated\np1,a,0.9,0,1\np2,b,0.4,0,0\n"
    o = read_searches(write(tmp_path, text), gallery_size=50)
    assert o.mate_rank.tolist() == [0] and o.n_nonmated == 1


@pytest.mark.parametrize("text, kwargs, fragment", [
    ("probe,score,mated\np,1,1\n", {}, "expected a column 'candidate'"),
    ("probe,candidate,score\np,a,1\n", {}, "expected a column 'mated'"),
    ("probe,candidate,score,mated\np,a,1,1\np,a,2,0\n", {}, "line 2: expected each (probe, candidate) once"),
    ("probe,candidate,score,mated\np,a,1,1\np,b,2,0\n", {"gallery_size": 1},
     "--gallery-size: expected at least the longest candidate list (2), got 1"),
    ("probe,candidate,score,mated\np,a,inf,1\n", {}, "column 'score': expected a finite number, got 'inf'"),
])
def test_bad_search_files(tmp_path, text, kwargs, fragment):
    with pytest.raises(InvalidInputError) as exc:
        read_searches(write(tmp_path, text), **kwargs)
    assert fragment in str(exc.value)
