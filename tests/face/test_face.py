"""Face modality: model integrity, templates, bad inputs, mated vs non-mated, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _util import need_dataset

from biomatch.errors import BiomatchError, IncompatibleTemplateError
from biomatch.face import (FaceImageError, FaceModelError, FaceQuality, FaceTemplate,
                           FaceTemplateError, MultipleFacesError, NoFaceError, cosine, decode,
                           encode, encode_face)
from biomatch.face import nets
from biomatch.face.align import TEMPLATE_112, similarity_transform


def _template(seed=0, model_hash="0123456789abcdef"):
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    q = FaceQuality(0.9, 120.0, 50.0, 1.5, 0.05, 300.0)
    return FaceTemplate(v / np.linalg.norm(v), "sface-2021dec-int8bq", model_hash, "p" * 16, q)


# -- models -------------------------------------------------------------------------------

def test_vendored_models_match_their_sha256():
    for name in nets.MODEL_SHA256:
        assert len(nets.model_bytes(name)) > 100_000


def test_flipped_byte_is_refused():
    data = bytearray(nets.model_bytes(nets.DETECTOR_FILE))
    data[len(data) // 2] ^= 0x01
    with pytest.raises(FaceModelError, match="SHA-256"):
        nets.verify_bytes(nets.DETECTOR_FILE, bytes(data), nets.MODEL_SHA256[nets.DETECTOR_FILE])


def test_altered_file_on_disk_is_refused(tmp_path, monkeypatch):
    for name in nets.MODEL_SHA256:
        data = bytearray(nets.model_bytes(name))
        if name == nets.RECOGNIZER_FILE:
            data[1000] ^= 0xFF
        (tmp_path / name).write_bytes(bytes(data))
    monkeypatch.setattr(nets, "MODEL_DIR", tmp_path)
    nets.model_bytes.cache_clear()
    try:
        with pytest.raises(FaceModelError):
            nets.model_bytes(nets.RECOGNIZER_FILE)
        assert nets.model_bytes(nets.DETECTOR_FILE)
    finally:
        nets.model_bytes.cache_clear()


def test_errors_are_biomatch_errors():
    for cls in (FaceImageError, FaceModelError, FaceTemplateError, MultipleFacesError, NoFaceError):
        assert issubclass(cls, BiomatchError)


# -- alignment, templates, matching ---------------------------------------------------------

def test_similarity_transform_recovers_a_known_one():
    a = np.deg2rad(12)
    m = 1.7 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    src = TEMPLATE_112 @ m.T + [30, -5]
    est = similarity_transform(src, TEMPLATE_112)
    np.testing.assert_allclose(src @ est[:, :2].T + est[:, 2], TEMPLATE_112, atol=1e-9)


def test_template_round_trip():
    t = _template()
    u = decode(encode(t))
    np.testing.assert_array_equal(u.embedding, t.embedding)
    assert (u.model_id, u.model_hash, u.params_hash, u.quality) == (t.model_id, t.model_hash, t.params_hash,
                                                                    t.quality)
    assert not u.embedding.flags.writeable
    assert cosine(t, u) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("mutate", [
    lambda b: b[:-1],
    lambda b: b + b"\0",
    lambda b: b"XXXX" + b[4:],
    lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:],
    lambda b: b"",
])
def test_corrupt_template_bytes_are_refused(mutate):
    with pytest.raises(FaceTemplateError):
        decode(mutate(encode(_template())))


def test_template_validates_embedding():
    t = _template()
    with pytest.raises(FaceTemplateError):
        FaceTemplate(t.embedding * 2, t.model_id, t.model_hash, t.params_hash, t.quality)
    with pytest.raises(FaceTemplateError):
        FaceTemplate(t.embedding[:64], t.model_id, t.model_hash, t.params_hash, t.quality)


def test_templates_of_other_models_are_not_compared():
    with pytest.raises(IncompatibleTemplateError):
        cosine(_template(0), _template(1, model_hash="fedcba9876543210"))


# -- bad inputs -----------------------------------------------------------------------------

@pytest.mark.parametrize("image", [
    np.zeros((0, 0), np.uint8),
    np.zeros((10, 10), np.uint8),                  # tiny
    np.full((200, 200), 128, np.uint8),            # grey / blank
    np.full((200, 200, 3), 255, np.uint8),         # white
    np.zeros((200, 200), np.float32),              # wrong dtype
    np.zeros((200, 200, 2), np.uint8),             # wrong shape
    [[1, 2], [3, 4]],                              # not an array
])
def test_unusable_images_are_typed(image):
    with pytest.raises(FaceImageError):
        encode_face(image)


def test_corrupt_file_is_typed(tmp_path):
    p = tmp_path / "broken.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 10)
    with pytest.raises(FaceImageError):
        encode_face(p)
    with pytest.raises(FaceImageError):
        encode_face(tmp_path / "missing.png")


def test_noise_has_no_face():
    img = np.random.default_rng(0).integers(0, 256, (240, 320), dtype=np.uint8)
    with pytest.raises(NoFaceError):
        encode_face(img)


def test_fingerprint_given_as_face_is_no_face():
    path = need_dataset("samples/sourceafis_triple/probe.png")
    with pytest.raises(NoFaceError):
        encode_face(path)


# -- real faces -----------------------------------------------------------------------------

def test_mated_pair_scores_above_non_mated():
    root = need_dataset("faces/photos_a")
    a = encode_face(root / "id01" / "img1.jpg")
    b = encode_face(root / "id01" / "img2.jpg")
    c = encode_face(root / "id02" / "img13.jpg")
    assert a.embedding.dtype == np.float32 and a.embedding.shape == (128,)
    assert np.linalg.norm(a.embedding) == pytest.approx(1.0, abs=1e-5)
    assert cosine(a, b) > 0.363 > cosine(a, c)
    assert a.quality.detector_score >= 0.7 and a.quality.eye_distance_px > 10
    assert abs(a.quality.roll_deg) < 30 and a.quality.blur_var > 0


def test_several_faces_are_reported_not_guessed():
    import cv2

    root = need_dataset("faces/photos_a")
    a = cv2.imread(str(root / "id01" / "img1.jpg"))
    b = cv2.imread(str(root / "id02" / "img13.jpg"))
    h = min(a.shape[0], b.shape[0])
    side = [cv2.resize(x, (round(x.shape[1] * h / x.shape[0]), h)) for x in (a, b)]
    with pytest.raises(MultipleFacesError) as info:
        encode_face(np.hstack(side))
    assert len(info.value.faces) == 2


def test_small_frame_filling_orl_face_is_found():
    root = need_dataset("faces/orl")
    t = encode_face(root / "s1" / "1.pgm")
    assert t.quality.face_width_px > 40


def test_encoding_is_thread_safe():
    from concurrent.futures import ThreadPoolExecutor

    root = need_dataset("faces/photos_a")
    path = root / "id01" / "img1.jpg"
    ref = encode_face(path).embedding
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: encode_face(path).embedding, range(8)))
    for o in outs:
        np.testing.assert_allclose(o, ref, atol=1e-6)


# -- command line ---------------------------------------------------------------------------

def test_cli_evaluate_faces_json(capsys):
    from biomatch.cli import main

    root = need_dataset("faces/photos_b")
    assert main(["evaluate", "faces", str(root), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    for key in ("eer", "fmr100", "fmr1000", "n_genuine", "n_impostor", "failed_to_detect", "embed_ms_median"):
        assert key in s
    assert s["n_genuine"] > 0 and s["n_impostor"] > 0 and s["eer"] <= 0.05


def test_cli_evaluate_faces_bad_folder_is_exit_2(tmp_path, capsys):
    from biomatch.cli import main

    assert main(["evaluate", "faces", str(tmp_path / "nope")]) == 2
    assert "error" in capsys.readouterr().err
