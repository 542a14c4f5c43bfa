"""Finger codes: shape and determinism, invariance, mates closer than non-mates, bad input, model file."""

from __future__ import annotations

import numpy as np
import pytest

from biomatch.datasets.code_training import training_templates
from biomatch.retrieval import codes as E
from biomatch.retrieval.training import train_model
from biomatch.datasets.synthetic import template_impressions
from biomatch.errors import InvalidInputError
from biomatch.template import Template


def _moved(t: Template, angle: float, shift=(12.0, -7.0), drop: float = 0.0, seed: int = 0) -> Template:
    """The same finger turned by ``angle`` (counter-clockwise as displayed) and shifted."""
    m = t.minutiae
    keep = np.random.default_rng(seed).random(len(m)) >= drop
    x, y = m["x"][keep] - 160.0, m["y"][keep] - 200.0
    c, s = np.cos(angle), np.sin(angle)
    return Template.from_arrays(c * x + s * y + 160 + shift[0], -s * x + c * y + 200 + shift[1],
                                m["angle"][keep] + angle, width=t.width, height=t.height)


def test_default_model_loads_and_identifies_its_generation():
    model = E.default_model()
    p = model.params
    assert p == E.EncodeParams()
    assert len(model.model_hash) == 16 and model.generation.endswith(model.model_hash)
    assert E.DEFAULT_MODEL_PATH.is_file()


def test_codes_shape_dtype_and_determinism():
    ts = template_impressions(3, 4)
    codes, valid = E.finger_codes(ts, return_valid=True)
    assert codes.dtype == np.uint8 and codes.shape == (4, E.default_model().params.n_bytes)
    assert valid.all()
    np.testing.assert_array_equal(codes, E.finger_codes(ts))
    np.testing.assert_array_equal(E.finger_code(ts[1]), codes[1])
    # Batch composition does not change a code.
    np.testing.assert_array_equal(E.finger_codes(ts[2:3] + template_impressions(9, 2))[0], codes[2])


def test_empty_and_tiny_templates_give_zero_code_and_flag():
    tiny = Template.from_arrays([10, 50, 90], [10, 40, 70], [0.1, 0.2, 0.3], width=100, height=100)
    far = Template.from_arrays([0, 400, 0, 400], [0, 0, 400, 400], [0, 1, 2, 3], width=500, height=500)
    codes, valid = E.finger_codes([Template.empty(), tiny, far, template_impressions(1, 1)[0]], return_valid=True)
    assert list(valid) == [False, False, False, True]
    assert not codes[:3].any() and codes[3].any()
    c0, v0 = E.finger_codes([], return_valid=True)
    assert c0.shape == (0, E.default_model().params.n_bytes) and v0.shape == (0,)


def test_rotation_and_translation_invariance():
    t = template_impressions(11, 1)[0]
    n_bits = E.default_model().params.n_bits
    codes = E.finger_codes([t] + [_moved(t, a) for a in (0.3, -1.2, 2.5)])
    d = E.hamming(codes[:1], codes[1:])[0]
    # Exact in real arithmetic; float32 rounding may flip a bit that sits on a bin edge.
    assert np.all(d <= 0.02 * n_bits), d


def test_mates_are_closer_than_non_mates():
    fingers = 200
    a, b = zip(*(template_impressions(100 + f, 2) for f in range(fingers)))
    d = E.hamming(E.finger_codes(list(a)), E.finger_codes(list(b))).astype(float)
    gen = np.diag(d)
    imp = d[~np.eye(fingers, dtype=bool)]
    n_bits = E.default_model().params.n_bits
    assert abs(imp.mean() / n_bits - 0.5) < 0.02  # balanced bits
    d_prime = (imp.mean() - gen.mean()) / np.sqrt((imp.var() + gen.var()) / 2)
    assert d_prime > 1.3, d_prime  # measured 1.7-1.8 (benchmarks/retrieval.py)
    rank = (d <= gen[:, None]).sum(1) - 1
    assert np.mean(rank <= 0.05 * fingers) > 0.35


def test_hamming_matches_numpy_reference():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (7, 64), dtype=np.uint8)
    b = rng.integers(0, 256, (5, 64), dtype=np.uint8)
    ref = np.unpackbits(a[:, None, :] ^ b[None, :, :], axis=2).sum(2)
    np.testing.assert_array_equal(E.hamming(a, b), ref)


def test_bad_input_raises_typed_errors():
    t = template_impressions(1, 1)[0]
    with pytest.raises(InvalidInputError, match="template"):
        E.finger_code(np.zeros(3))
    with pytest.raises(InvalidInputError, match=r"templates\[1\]"):
        E.finger_codes([t, "not a template"])
    with pytest.raises(InvalidInputError, match="templates"):
        E.finger_codes(t)
    with pytest.raises(InvalidInputError, match="model"):
        E.finger_codes([t], model="default")
    with pytest.raises(InvalidInputError, match="n_bits"):
        E.EncodeParams(n_bits=100)
    with pytest.raises(InvalidInputError, match="n_bits"):
        E.EncodeParams(distance_bins=2, angle_bins=4)
    with pytest.raises(InvalidInputError, match="a"):
        E.hamming(np.zeros((2, 64), np.int32), np.zeros((2, 64), np.uint8))


def test_model_save_load_round_trip_and_corruption(tmp_path):
    p = E.EncodeParams(distance_bins=4, angle_bins=4, n_bits=64, training_fingers=120, itq_iterations=3)
    model = train_model(training_templates(p), p)
    path = tmp_path / "m.npz"
    model.save(path)
    back = E.EncodeModel.load(path)
    assert back.generation == model.generation and back.params == p
    ts = template_impressions(5, 3)
    np.testing.assert_array_equal(E.finger_codes(ts, back), E.finger_codes(ts, model))
    # A changed array is detected by the stored hash.
    with np.load(path) as z:
        arrays = dict(z)
    arrays["mean"] = arrays["mean"] + 1.0
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(E.EncodeModelError, match="hash"):
        E.EncodeModel.load(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(E.EncodeModelError):
        E.EncodeModel.load(tmp_path / "junk.npz")
