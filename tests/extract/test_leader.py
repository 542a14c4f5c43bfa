"""The optional LEADER extractor (skipped when the model file is not installed)."""

import threading

import numpy as np
import pytest

from biomatch.errors import BiomatchError, InvalidInputError
from biomatch.extract.leader import LEADER_SHA256, PARAMS_TAG, LeaderModelError, extract_leader, find_leader_model
from biomatch.match import SCORE_AT_FMR, FingerprintMatcher
from biomatch.template import Template


def _model():
    try:
        return find_leader_model()
    except LeaderModelError as exc:
        # An optional extra: absent is a normal configuration, so always skip (also under CI).
        pytest.skip(f"LEADER model not installed: {exc}")


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def leader_trio(model, triple):
    return {k: extract_leader(p, 500, model_path=model) for k, p in triple.items()}


def test_trio_score_bands(leader_trio):
    t = leader_trio
    assert all(20 <= len(x) <= 120 and x.quality > 40 for x in t.values())
    m = FingerprintMatcher(t["probe"])
    assert m.match(t["matching"]) >= 2 * SCORE_AT_FMR[0.0001]  # measured 0.21
    assert m.match(t["nonmatching"]) < SCORE_AT_FMR[0.01]  # measured 0.012


def test_convention_agrees_with_classic_extractor(leader_trio, triple):
    """Angles, axes and kinds as biomatch's: LEADER vs classic minutiae of one print match."""
    from biomatch.extract import extract

    classic = extract(triple["probe"], 500)
    assert FingerprintMatcher(leader_trio["probe"]).match(classic) > 0.3  # measured 0.46
    assert FingerprintMatcher(leader_trio["matching"]).match(classic) > SCORE_AT_FMR[0.0001]
    assert FingerprintMatcher(leader_trio["nonmatching"]).match(classic) < SCORE_AT_FMR[0.01]


def test_template_fields(leader_trio, triple):
    import cv2

    t, cap = leader_trio["probe"], {}
    again = extract_leader(cv2.imread(str(triple["probe"]), cv2.IMREAD_GRAYSCALE), 500, capture=cap)
    assert again == t  # path and array inputs agree; deterministic
    assert t.params_hash == PARAMS_TAG and (t.width, t.height) == (388, 374)
    m = t.minutiae
    assert set(np.unique(m["kind"])) <= {1, 2} and np.all(m["quality"] >= 1)
    assert {"grey", "mask", "coherence", "maps", "minutiae"} <= set(cap)
    assert cap["maps"].shape == (374, 388, 4)
    assert np.all(cap["mask"][m["y"].astype(int), m["x"].astype(int)] == 1)


def test_deterministic_across_threads(leader_trio, triple, model):
    out = [None, None]

    def run(k):
        out[k] = extract_leader(triple["matching"], 500, model_path=model)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert out[0] == out[1] == leader_trio["matching"]


@pytest.mark.parametrize("image", [np.full((300, 300), 128, np.uint8), np.zeros((300, 300), np.uint8)])
def test_blank_image_gives_empty_template(model, image):
    t = extract_leader(image, 500, model_path=model)
    assert isinstance(t, Template) and len(t) == 0 and t.quality == 0


@pytest.mark.parametrize("image, dpi", [
    (np.zeros((1, 1), np.uint8), 500),
    (np.zeros((10, 10), np.uint8), 500),
    (np.zeros((300, 300), np.float64) + np.nan, 500),
    (np.zeros((300, 300, 7), np.uint8), 500),
    (np.zeros((300, 300), np.uint8), float("nan")),
    (np.zeros((300, 300), np.uint8), -500),
    ("not an image", 500),
])
def test_bad_input_raises_own_error(model, image, dpi):
    with pytest.raises(BiomatchError):
        extract_leader(image, dpi, model_path=model)


def test_bad_model_path_type(model):
    with pytest.raises(InvalidInputError):
        extract_leader(np.zeros((300, 300), np.uint8), 500, model_path=42)


def test_missing_model_file(tmp_path):
    with pytest.raises(LeaderModelError, match="model_path"):
        extract_leader(np.zeros((300, 300), np.uint8), 500, model_path=tmp_path / "absent.onnx")


def test_checksum_mismatch_refused(model, tmp_path, synthetic):
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last byte
    bad = tmp_path / "LEADER.onnx"
    bad.write_bytes(bytes(data))
    with pytest.raises(LeaderModelError, match=LEADER_SHA256):
        extract_leader(synthetic, 500, model_path=bad)


def test_env_variable_selects_model(model, monkeypatch, tmp_path):
    monkeypatch.setenv("BIOMATCH_LEADER_MODEL", str(model))
    assert find_leader_model() == model
    monkeypatch.setenv("BIOMATCH_LEADER_MODEL", str(tmp_path / "absent.onnx"))
    with pytest.raises(LeaderModelError, match="BIOMATCH_LEADER_MODEL"):
        find_leader_model()


@pytest.fixture
def synthetic():
    from _util import synthetic_ridges

    return synthetic_ridges()
