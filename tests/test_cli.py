"""The command line, through main([...]), with a fake extractor and matcher.

The fakes stand in for biomatch.extract / biomatch.match (sys.modules), so these tests
check the command line itself: arguments, outputs, exit codes and error messages.
"""

import json
import sys
import types

import numpy as np
import pytest

from biomatch import cli
from biomatch.formats import load_native, save
from biomatch.template import Template


def fake_template(finger: int, impression: int) -> Template:
    # finger in width, impression in height: the fake matcher compares widths
    rng = np.random.default_rng(finger)
    n = 20
    return Template.from_arrays(rng.uniform(0, 300, n), rng.uniform(0, 300, n), rng.uniform(0, 6, n),
                                width=finger, height=impression, print_quality=60)


def fake_extract(image, dpi, params=None, capture=None):
    from biomatch.imaging import check_dpi

    check_dpi(dpi)
    data = open(image, "rb").read().decode()
    finger, impression = (int(x) for x in data.split("_"))
    return fake_template(finger, impression)


class FakeMatcher:
    def __init__(self, probe):
        self.probe = probe

    def match(self, candidate):
        return 50.0 if candidate.width == self.probe.width else 5.0

    def match_many(self, candidates, n_threads=1):
        return np.array([self.match(c) for c in candidates], np.float32)


@pytest.fixture
def fakes(monkeypatch):
    # The CLI's gallery commands import the dedup package, which binds the real matcher at import:
    # import them before the fakes go in, whatever order the tests run in.
    import biomatch.cli.gallery  # noqa: F401

    ext = types.ModuleType("biomatch.extract")
    ext.extract = fake_extract
    match = types.ModuleType("biomatch.match")
    match.FingerprintMatcher = FakeMatcher
    match.prepare = lambda t: t  # run_fvc prepares each template once, as at enrolment
    match.THRESHOLDS = {"fmr_1e-2": 20.0, "fmr_1e-3": 30.0, "fmr_1e-4": 40.0}
    monkeypatch.setitem(sys.modules, "biomatch.extract", ext)
    monkeypatch.setitem(sys.modules, "biomatch.match", match)
    return match


def image(tmp_path, finger, impression):
    p = tmp_path / f"{finger}_{impression}.tif"
    p.write_text(f"{finger}_{impression}")
    return p


@pytest.fixture
def fvc_folder(tmp_path):
    folder = tmp_path / "db"
    folder.mkdir()
    for f in range(101, 105):
        for i in range(1, 5):
            image(folder, f, i)
    return folder


# --------------------------------------------------------------------------- extract

def test_extract_writes_native_template(fakes, tmp_path, capsys):
    out = tmp_path / "t.bmt"
    assert cli.main(["extract", str(image(tmp_path, 101, 1)), "--dpi", "500", "-o", str(out)]) == 0
    assert load_native(out) == fake_template(101, 1)
    assert "20 minutiae" in capsys.readouterr().out


def test_extract_rejects_unknown_format(fakes, tmp_path, capsys):
    code = cli.main(["extract", str(image(tmp_path, 101, 1)), "--dpi", "500", "-o", "x", "--format", "iso"])
    assert code == 2 and "invalid choice" in capsys.readouterr().err


def test_extract_unwritable_output_is_exit_2(fakes, tmp_path, capsys):
    code = cli.main(["extract", str(image(tmp_path, 101, 1)), "--dpi", "500", "-o", str(tmp_path / "no" / "t")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("biomatch: error:") and "Traceback" not in err


@pytest.mark.parametrize("dpi", ["nan", "-500", "0", "abc"])
def test_bad_dpi_is_a_usage_error(fakes, tmp_path, dpi, capsys):
    assert cli.main(["extract", str(image(tmp_path, 101, 1)), "--dpi", dpi, "-o", "x"]) == 2
    assert "--dpi" in capsys.readouterr().err


def test_out_of_range_dpi_is_input_error(fakes, tmp_path, capsys):
    assert cli.main(["extract", str(image(tmp_path, 101, 1)), "--dpi", "50", "-o", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "dpi" in err and "Traceback" not in err


# --------------------------------------------------------------------------- verify

def test_verify_images(fakes, tmp_path, capsys):
    assert cli.main(["verify", str(image(tmp_path, 101, 1)), str(image(tmp_path, 101, 2)), "--dpi", "500"]) == 0
    out = capsys.readouterr().out
    assert "score: 50.0000" in out
    assert out.count("MATCH") == 3 and "FMR 0.01%" in out


def test_verify_templates_need_no_dpi_and_are_sniffed_by_magic(fakes, tmp_path, capsys):
    a, b = tmp_path / "a.dat", tmp_path / "b.png"  # names do not matter, the BMT1 magic does
    save(fake_template(101, 1), a)
    save(fake_template(102, 1), b)
    assert cli.main(["verify", str(a), str(b), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["score"] == 5.0 and result["match"] == {"fmr_1e-2": False, "fmr_1e-3": False, "fmr_1e-4": False}


def test_verify_template_against_image(fakes, tmp_path, capsys):
    a = tmp_path / "a.bmt"
    save(fake_template(103, 1), a)
    assert cli.main(["verify", str(a), str(image(tmp_path, 103, 2)), "--dpi", "500", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["match"]["fmr_1e-4"] is True


def test_verify_image_without_dpi(fakes, tmp_path, capsys):
    assert cli.main(["verify", str(image(tmp_path, 101, 1)), str(image(tmp_path, 101, 2))]) == 2
    err = capsys.readouterr().err
    assert "--dpi" in err and "Traceback" not in err


def test_verify_without_published_thresholds(fakes, tmp_path, capsys):
    del fakes.THRESHOLDS
    assert cli.main(["verify", str(image(tmp_path, 101, 1)), str(image(tmp_path, 102, 2)), "--dpi", "500"]) == 0
    assert "decision: unavailable" in capsys.readouterr().out


def test_verify_reads_score_at_fmr_when_no_thresholds(fakes, tmp_path, capsys):
    del fakes.THRESHOLDS
    fakes.SCORE_AT_FMR = {0.01: 20.0, 0.001: 30.0, 0.0001: None}
    a, b = image(tmp_path, 101, 1), image(tmp_path, 101, 2)
    assert cli.main(["verify", str(a), str(b), "--dpi", "500", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["thresholds"] == {"fmr_1e-2": 20.0, "fmr_1e-3": 30.0, "fmr_1e-4": None}
    assert result["match"] == {"fmr_1e-2": True, "fmr_1e-3": True, "fmr_1e-4": None}
    assert cli.main(["verify", str(a), str(b), "--dpi", "500"]) == 0
    out = capsys.readouterr().out
    assert "FMR 1% (threshold 20): MATCH" in out and "FMR 0.01% (threshold not measured yet)" in out


def test_verify_corrupt_template_is_exit_2(fakes, tmp_path, capsys):
    a = tmp_path / "a.bmt"
    a.write_bytes(b"BMT1" + b"\0" * 10)
    assert cli.main(["verify", str(a), str(a)]) == 2
    assert "template" in capsys.readouterr().err


def test_verify_missing_file_is_exit_2(fakes, tmp_path, capsys):
    assert cli.main(["verify", str(tmp_path / "nope.tif"), str(tmp_path / "nope2.tif"), "--dpi", "500"]) == 2
    assert "nope.tif" in capsys.readouterr().err


# --------------------------------------------------------------------------- evaluate fvc

def test_evaluate_fvc_json(fakes, fvc_folder, capsys):
    assert cli.main(["evaluate", "fvc", str(fvc_folder), "--dpi", "500", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("eer", "fmr100", "fmr1000", "zerofmr", "eer_fvc", "n_genuine", "n_impostor",
                "extract_ms_median", "match_us_median", "prepare_ms_median"):
        assert key in result
    assert result["n_genuine"] == 4 * 6 and result["n_impostor"] == 16 * 12 // 2
    assert result["eer"] == 0.0 and result["eer_fvc"] == 0.0


def test_evaluate_fvc_text_and_out(fakes, fvc_folder, tmp_path, capsys):
    out = tmp_path / "res"
    assert cli.main(["evaluate", "fvc", str(fvc_folder), "--dpi", "500", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "EER" in text and "FMR1000" in text and "ZeroFMR" in text and "genuine pairs        24" in text
    lines = (out / "scores.csv").read_text().splitlines()
    assert lines[0] == "kind,probe,candidate,score" and len(lines) == 1 + 24 + 96
    assert lines[1].startswith("genuine,101_1,101_2,")
    assert (out / "det.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_missing_folder(fakes, tmp_path, capsys):
    assert cli.main(["evaluate", "fvc", str(tmp_path / "nope"), "--dpi", "500"]) == 2
    err = capsys.readouterr().err
    assert "folder" in err and "Traceback" not in err


def test_evaluate_requires_dpi(fakes, fvc_folder, capsys):
    assert cli.main(["evaluate", "fvc", str(fvc_folder)]) == 2
    assert "--dpi" in capsys.readouterr().err


# --------------------------------------------------------------------------- general

def test_help_and_version(capsys):
    assert cli.main(["--version"]) == 0
    assert "biomatch" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert "Exit codes" in capsys.readouterr().out


def test_no_command_is_usage_error(capsys):
    assert cli.main([]) == 2


def test_unexpected_errors_are_not_swallowed(fakes, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr(sys.modules["biomatch.extract"], "extract", boom)
    with pytest.raises(RuntimeError):
        cli.main(["extract", str(image(tmp_path, 101, 1)), "--dpi", "500", "-o", str(tmp_path / "t")])


def test_python_dash_m_runs_the_cli():
    import subprocess

    r = subprocess.run([sys.executable, "-m", "biomatch", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "biomatch" in r.stdout


# --------------------------------------------------------------------------- evaluate scores / identification / threshold

def score_csv(tmp_path, name="s.csv", shift=3.0, seed=0):
    rng = np.random.default_rng(seed)
    rows = ["score,label,subject"]
    for s in range(20):
        rows += [f"{rng.normal(shift, 1):.5f},1,s{s}" for _ in range(4)]
        rows += [f"{rng.normal(0, 1):.5f},0,s{s}" for _ in range(60)]
    p = tmp_path / name
    p.write_text("\n".join(rows) + "\n")
    return p


def test_evaluate_scores_json(tmp_path, capsys):
    f = score_csv(tmp_path)
    assert cli.main(["evaluate", "scores", str(f), "--json", "--n-boot", "200"]) == 0
    s = json.loads(capsys.readouterr().out)
    for key in ("eer", "fmr100", "fmr1000", "zerofmr", "n_genuine", "n_impostor"):
        assert key in s
    assert isinstance(s["eer_ci95"], list) and len(s["eer_ci95"]) == 2
    assert (s["n_genuine"], s["n_impostor"], s["n_subjects"]) == (80, 1200, 20)
    assert cli.main(["evaluate", "scores", str(f), "--json", "--n-boot", "200"]) == 0
    assert json.loads(capsys.readouterr().out) == s  # seeded: the same intervals


def test_evaluate_scores_text_and_report(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    f, peer = score_csv(tmp_path), score_csv(tmp_path, "peer.csv", 1.5, 1)
    out = tmp_path / "rep"
    assert cli.main(["evaluate", "scores", str(f), "--n-boot", "50", "--out", str(out),
                     "--peer", f"other={peer}"]) == 0
    text = capsys.readouterr().out
    assert "bootstrap over 20 subjects" in text and "EER" in text and "report:" in text
    md = (out / "report.md").read_text()
    assert "| other |" in md and (out / "figures" / "s_det.png").is_file()


@pytest.mark.parametrize("text, fragment", [
    ("score,label\n0.5,1\nnan,0\n", "column 'score': expected a finite number, got 'nan'"),
    ("score,label\n0.5,1\n0.1,7\n", "column 'label': expected 0 or 1, got '7'"),
    ("score\n0.5\n", "expected a column 'label'"),
    ("score,label\n0.5,1\n", "expected at least one impostor"),
])
def test_evaluate_scores_bad_input_is_exit_2(tmp_path, capsys, text, fragment):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    assert cli.main(["evaluate", "scores", str(f)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_evaluate_scores_missing_file(tmp_path, capsys):
    assert cli.main(["evaluate", "scores", str(tmp_path / "none.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def ident_csv(tmp_path):
    rows = ["probe,candidate,score,mated"]
    rng = np.random.default_rng(0)
    for p in range(30):
        mate = p % 10 if p < 20 else -1
        rows += [f"p{p},g{c},{rng.normal(3 if c == mate else 0, 1):.4f},{int(c == mate)}" for c in range(10)]
    f = tmp_path / "ident.csv"
    f.write_text("\n".join(rows) + "\n")
    return f


def test_evaluate_identification(tmp_path, capsys):
    f = ident_csv(tmp_path)
    assert cli.main(["evaluate", "identification", str(f), "--json", "--ranks", "1,3"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["n_mated"], s["n_nonmated"], s["gallery_size"]) == (20, 10, 10)
    assert set(s["rank"]) == {"1", "3"} and 0 <= s["rank"]["1"] <= s["rank"]["3"] <= 1
    assert set(s["fnir_at_fpir"]) == {"0.1", "0.01", "0.001"}
    assert cli.main(["evaluate", "identification", str(f), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "rank-1" in out and "FNIR at FPIR 0.1" in out and "hit rate at penetration" in out
    if pytest.importorskip("matplotlib"):
        assert (tmp_path / "o" / "cmc.png").is_file() and (tmp_path / "o" / "penetration.png").is_file()


def test_evaluate_identification_bad_rate(tmp_path, capsys):
    assert cli.main(["evaluate", "identification", str(ident_csv(tmp_path)), "--fpir", "2"]) == 2
    assert "--fpir: expected rates in [0, 1], got 2.0" in capsys.readouterr().err


def test_threshold_fmr_with_interval_and_table(tmp_path, capsys):
    f = score_csv(tmp_path)
    table = tmp_path / "cal.json"
    assert cli.main(["threshold", "--fmr", "1e-2", str(f), "--n-boot", "100", "--table", str(table)]) == 0
    out = capsys.readouterr().out
    assert "threshold for FMR <= 0.01:" in out and "95% interval of the threshold" in out
    assert "(bootstrap-subjects, 100 replicates, seed 0)" in out and "FNMR on this set" in out
    assert json.loads(table.read_text())["n_impostor"] == 1200
    assert cli.main(["threshold", "--fmr", "1e-2", str(f), "--n-boot", "100", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["fmr"] <= 0.01 and s["ci95"][0] <= s["threshold"] <= s["ci95"][1]


def test_threshold_below_resolution_says_so(tmp_path, capsys):
    assert cli.main(["threshold", "--fmr", "1e-5", str(score_csv(tmp_path)), "--n-boot", "20"]) == 0
    assert "below the resolution of 1200 impostor comparisons" in capsys.readouterr().out


def test_threshold_fpir(tmp_path, capsys):
    assert cli.main(["threshold", "--fpir", "0.1", str(ident_csv(tmp_path)), "--n-boot", "20"]) == 0
    out = capsys.readouterr().out
    assert "threshold for FPIR <= 0.1" in out and "of 10 non-mated searches" in out


@pytest.mark.parametrize("argv, fragment", [
    (["threshold", "x.csv"], "one of the arguments --fmr --fpir is required"),
    (["threshold", "--fmr", "2", "x.csv"], "expected a rate in [0, 1]"),
    (["threshold", "--fmr", "abc", "x.csv"], "expected a rate in [0, 1]"),
])
def test_threshold_usage_errors(argv, fragment, capsys):
    assert cli.main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_evaluate_fvc_report_with_peer(fakes, fvc_folder, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    assert cli.main(["evaluate", "fvc", str(fvc_folder), "--dpi", "500", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    peer = out / "scores.csv"  # biomatch's own CSV stands in for a peer's
    out2 = tmp_path / "out2"
    assert cli.main(["evaluate", "fvc", str(fvc_folder), "--dpi", "500", "--out", str(out2), "--quiet",
                     "--report", "--peer", f"peer={peer}", "--n-boot", "30"]) == 0
    md = (out2 / "report.md").read_text()
    assert "| peer |" in md and "| biomatch |" in md and "figures/db_det.png" in md and "CMC" in md
    assert (out2 / "calibration.json").is_file()


def test_report_needs_out(fakes, fvc_folder, capsys):
    assert cli.main(["evaluate", "fvc", str(fvc_folder), "--dpi", "500", "--report"]) == 2
    assert "--report: expected --out DIR as well" in capsys.readouterr().err


def test_fvc2002_report_peer_folder_must_hold_the_sets(fakes, tmp_path, capsys):
    root = tmp_path / "fvc2002"
    (root / "db1_b").mkdir(parents=True)
    for f in (101, 102):
        for i in (1, 2):
            image(root / "db1_b", f, i)
    peers = tmp_path / "peers"
    peers.mkdir()
    code = cli.main(["evaluate", "fvc2002", str(root), "--out", str(tmp_path / "o"), "--report",
                     "--peer", f"p={peers}", "--quiet"])
    assert code == 2 and "--peer: expected db1_b.csv or db1_b/scores.csv" in capsys.readouterr().err


def test_quality_and_dpi_auto_on_the_command_line(tmp_path, capsys):
    """``biomatch quality IMAGE --dpi N`` prints 0-100; a mis-stated dpi exits 2 naming the estimate;
    ``--dpi auto`` extracts at the estimated resolution."""
    from _util import need_dataset

    fvc = need_dataset("fvc2002/db1_b") / "101_1.tif"
    assert cli.main(["quality", str(fvc), "--dpi", "500"]) == 0
    assert 1 <= int(capsys.readouterr().out.strip()) <= 100
    assert cli.main(["quality", str(fvc), "--dpi", "auto", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"score", "features"}
    card = sorted(need_dataset("samples/nist_tenprint_1000ppi").glob("*.bmp"))[0]
    assert cli.main(["extract", str(card), "--dpi", "500", "-o", str(tmp_path / "t.bmt")]) == 2
    assert "appears to be about" in capsys.readouterr().err
    assert cli.main(["extract", str(card), "--dpi", "auto", "-o", str(tmp_path / "t.bmt")]) == 0
    assert "dpi (estimated from the ridge period)" in capsys.readouterr().out


def test_synth_fvc_with_conditions(tmp_path, capsys):
    """``biomatch synth fvc OUT --condition NAME[:PARAM]``: degraded prints with their ground truth."""
    out = tmp_path / "s"
    assert cli.main(["synth", "fvc", str(out), "--fingers", "2", "--impressions", "2", "--quiet",
                     "--condition", "dry:0.08", "--condition", "resolution:1000"]) == 0
    assert "--dpi 1000" in capsys.readouterr().out
    truth = json.loads(sorted(out.glob("*.json"))[0].read_text())
    assert truth["dpi"] == 1000 and truth["conditions"]
    assert cli.main(["synth", "fvc", str(tmp_path / "x"), "--condition", "bogus", "--quiet"]) == 2
    assert "condition" in capsys.readouterr().err


# verify with the real matcher over every template format (no fakes)
@pytest.mark.parametrize("fmt_a,fmt_b", [("iso19794-2:2005", "iso19794-2:2011"), ("ansi378", "native"),
                                         ("iso19794-2:2011", "iso19794-2:2011"), ("native", "ansi378")])
def test_verify_accepts_every_template_format_in_any_mix(tmp_path, capsys, fmt_a, fmt_b):
    from biomatch.datasets.synthetic import template_impressions
    from biomatch.formats import dump

    mate_a, mate_b = template_impressions(11, 2)
    other = template_impressions(12, 1)[0]
    paths = {}
    for key, t, fmt in (("a", mate_a, fmt_a), ("b", mate_b, fmt_b), ("c", other, fmt_b)):
        paths[key] = tmp_path / f"{key}.rec"  # no telling extension: recognised by content
        paths[key].write_bytes(dump(t, fmt))
    assert cli.main(["verify", str(paths["a"]), str(paths["b"]), "--json"]) == 0
    mated = json.loads(capsys.readouterr().out)
    assert cli.main(["verify", str(paths["a"]), str(paths["c"]), "--json"]) == 0
    non_mated = json.loads(capsys.readouterr().out)
    assert mated["match"]["fmr_1e-4"] is True and non_mated["match"]["fmr_1e-2"] is False


def test_verify_standard_record_with_several_fingers_needs_position(tmp_path, capsys):
    from biomatch.datasets.synthetic import template_impressions
    from biomatch.formats import dump
    from biomatch.template import FingerView

    t2, t7 = template_impressions(21, 1)[0], template_impressions(27, 1)[0]
    record = tmp_path / "two.iso"
    record.write_bytes(dump([FingerView(t2, 2, 0, 0, 500), FingerView(t7, 7, 0, 0, 500)], "iso19794-2:2011"))
    probe = tmp_path / "probe.bmt"
    save(template_impressions(27, 2)[1], probe)
    assert cli.main(["verify", str(record), str(probe)]) == 2
    err = capsys.readouterr().err
    assert "--position" in err and "positions [2, 7]" in err
    assert cli.main(["verify", str(record), str(probe), "--position", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["match"]["fmr_1e-4"] is True
