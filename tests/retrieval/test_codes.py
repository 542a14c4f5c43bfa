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


def _with_params(model, **over):
    from dataclasses import replace

    return E.EncodeModel(replace(model.params, **over), model.mean, model.projection)


def test_window_codes_the_minutiae_inside_the_ellipse_around_their_centre():
    m0 = _with_params(E.default_model(), window_width_mm=0.0, window_height_mm=0.0, window_from_width_mm=0.0)
    t = template_impressions(21, 1)[0]
    m = t.minutiae
    # a wider print: the same finger with minutiae far out on both sides (a rolled print's sides)
    side = template_impressions(22, 1)[0].minutiae
    wide = Template.from_arrays(np.r_[m["x"] + 300, side["x"], side["x"] + 600], np.r_[m["y"], side["y"], side["y"]],
                                np.r_[m["angle"], side["angle"], side["angle"]], width=1000, height=t.height)
    for w, h in ((12.0, 0.0), (14.0, 24.0), (0.0, 10.0)):
        mw = _with_params(m0, window_width_mm=w, window_height_mm=h)
        for tt in (t, wide):
            x, y = tt.minutiae["x"].astype(float), tt.minutiae["y"].astype(float)
            r2 = ((x - x.mean()) / (w / 2 * E.PX_PER_MM)) ** 2 if w else 0.0
            r2 = r2 + (((y - y.mean()) / (h / 2 * E.PX_PER_MM)) ** 2 if h else 0.0)
            k = tt.minutiae[r2 <= 1]
            ref = Template.from_arrays(k["x"], k["y"], k["angle"], width=tt.width, height=tt.height)
            np.testing.assert_array_equal(E.finger_codes([tt], mw), E.finger_codes([ref], m0))
    # in one batch with other templates: the same codes (centres are per template)
    mw = _with_params(m0, window_width_mm=12.0)
    np.testing.assert_array_equal(E.finger_codes([t, wide, Template.empty(), t], mw)[[0, 1, 3]],
                                  np.r_[E.finger_codes([t], mw), E.finger_codes([wide], mw), E.finger_codes([t], mw)])
    assert (E.finger_codes([wide], mw) != E.finger_codes([wide], m0)).any()  # its sides are cut
    # a print inside the window keeps every minutia: its code is the code without a window
    assert np.ptp(t.minutiae["x"]) < 20 * E.PX_PER_MM
    np.testing.assert_array_equal(E.finger_codes([t], _with_params(m0, window_width_mm=40.0)), E.finger_codes([t], m0))


def test_only_prints_wider_than_a_plain_one_are_windowed():
    """The shipped codes window a print only when its minutiae span more than ``window_from_width_mm``
    across the finger (5th to 95th percentile, over 0.9): a plain print's code is the code without a
    window, a rolled-sized one's the code of its central band."""
    model = E.default_model()
    p = model.params
    assert p.window_width_mm > 0 and p.window_from_width_mm > p.window_width_mm
    bare = _with_params(model, window_width_mm=0.0, window_height_mm=0.0)
    every = _with_params(model, window_from_width_mm=0.0)

    def band(width_mm: float, n: int = 120, seed: int = 3) -> Template:
        rng = np.random.default_rng(seed)
        return Template.from_arrays(400 + rng.uniform(-0.5, 0.5, n) * width_mm * E.PX_PER_MM,
                                    300 + rng.uniform(-10, 10, n) * E.PX_PER_MM, rng.uniform(0, 6.28, n),
                                    width=800, height=600)

    narrow, broad = band(p.window_from_width_mm - 2), band(p.window_from_width_mm + 4)
    # a few spurious minutiae far out at a narrow print's border do not make it wide
    m = narrow.minutiae
    ragged = Template.from_arrays(np.r_[m["x"], [10.0, 790.0, 795.0]], np.r_[m["y"], [300.0, 300, 310]],
                                  np.r_[m["angle"], [0.0, 1, 2]], width=800, height=600)
    codes = E.finger_codes([narrow, ragged, broad], model)
    np.testing.assert_array_equal(codes[:2], E.finger_codes([narrow, ragged], bare))
    np.testing.assert_array_equal(codes[2], E.finger_codes([broad], every)[0])
    assert (codes[2] != E.finger_codes([broad], bare)[0]).any()


def test_window_parameters_are_checked():
    for name in ("window_width_mm", "window_height_mm"):
        for bad in (-1.0, True, "12", float("nan"), float("inf"), 5000.0):
            with pytest.raises(InvalidInputError, match=name):
                E.EncodeParams(**{name: bad})


def test_a_model_file_written_before_the_window_reads_without_one(tmp_path):
    import json

    from biomatch.params import stored_params_hash

    p = E.EncodeParams(distance_bins=4, angle_bins=4, n_bits=64, training_fingers=120, itq_iterations=3)
    model = train_model(training_templates(p), p)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as z:
        arrays = dict(z)
    doc = json.loads(str(arrays["params"]))
    for k in ("window_width_mm", "window_height_mm"):
        del doc["values"][k]  # as the version before the field wrote it
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    arrays["params"] = np.array(text)
    arrays["model_hash"] = np.array(model._hash(stored_params_hash(text, E.EncodeParams)))
    np.savez(tmp_path / "old.npz", **arrays)
    old = E.EncodeModel.load(tmp_path / "old.npz")
    assert old.params.window_width_mm == 0.0 and old.params.window_height_mm == 0.0
    ts = template_impressions(5, 3)
    np.testing.assert_array_equal(E.finger_codes(ts, old), E.finger_codes(ts, model))
