"""Asymmetric code scoring: probe weights against stored bits, and reading stored codes back."""

from __future__ import annotations

import numpy as np
import pytest

from biomatch.datasets.synthetic import template_impressions
from biomatch.errors import InvalidInputError
from biomatch.retrieval.codes import finger_codes, hamming, probe_weights
from biomatch.retrieval.faiss_retrieval import FaissRetrievalParams
from biomatch.retrieval.finger_index import FingerIndex


@pytest.fixture(scope="module")
def templates():
    return [t for f in range(60) for t in template_impressions(f, 2)]


def test_codes_are_the_stored_form_and_a_tiny_clip_is_hamming(templates):
    codes = finger_codes(templates)
    w = probe_weights(templates, clip=1e-6)
    assert np.array_equal(w.codes, codes) and w.valid.all()
    d = hamming(codes[:5], codes)
    for i in range(5):
        np.testing.assert_allclose(w.scores(i, codes), 256 - d[i], atol=1e-3)


def test_weighted_scores_keep_the_scale_and_order_mates_first(templates):
    codes = finger_codes(templates)
    w = probe_weights(templates)  # clip 1 sd
    above = 0
    for i in range(0, 60, 2):
        s = w.scores(i, codes)
        assert s[i] == pytest.approx(256, abs=1e-3)  # a code agrees with itself on every bit
        assert np.all(np.abs(s) <= 256 + 1e-3)
        above += s[i + 1] > np.median(np.delete(s, [i, i + 1]))
    assert above >= 27  # of 30 single-finger mates (easy population), nearly all beat the median impostor
    # flipping every bit of a code turns its score around
    assert w.scores(0, ~codes[:1])[0] == pytest.approx(-256, abs=1e-3)
    # weights of 3 bits (8 levels of min(|z|, 1)): the bit-plane form is the weighted sum it stands for
    q = sum(np.unpackbits(w.planes[0, level]).astype(np.int64) << level for level in range(3))
    assert q.max() == 7 and q.sum() == w.totals[0]
    agree = np.where(np.unpackbits(codes[1]) == np.unpackbits(codes[0]), 1, -1)
    assert w.scores(0, codes[1:2])[0] == pytest.approx(256 * (q * agree).sum() / q.sum(), abs=1e-3)


def test_an_unusable_probe_scores_nothing():
    empty = template_impressions(3, 1)[0]
    few = type(empty)(empty.minutiae[:2], empty.width, empty.height, empty.quality, empty.params_hash)
    w = probe_weights([few])
    assert not w.valid[0] and not w.codes.any() and not w.planes.any() and w.totals[0] == 0 and w.scales[0] == 0
    assert probe_weights([]).planes.shape == (0, 3, 64)


def test_bad_arguments_are_refused(templates):
    with pytest.raises(InvalidInputError, match="clip"):
        probe_weights(templates[:2], clip=0)
    with pytest.raises(InvalidInputError, match="templates"):
        probe_weights([object()])
    w = probe_weights(templates[:2])
    with pytest.raises(InvalidInputError, match="codes"):
        w.scores(0, np.zeros((3, 32), np.uint8))
    with pytest.raises(InvalidInputError, match="probe_weight_clip_sd"):
        FaissRetrievalParams(probe_weight_clip_sd=0.0)
    with pytest.raises(InvalidInputError, match="probe_weight_clip_sd"):
        FaissRetrievalParams(probe_weight_clip_sd=float("inf"))


def test_stored_codes_read_back_from_memory_and_from_a_mapped_file(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (50, 64), dtype=np.uint8)
    ix = FingerIndex(512)
    ix.add(x)
    assert np.array_equal(ix.codes(np.array([7, 0, 49])), x[[7, 0, 49]])
    ix.save(tmp_path / "p.faiss")
    mapped = FingerIndex.open(tmp_path / "p.faiss")
    y = rng.integers(0, 256, (5, 64), dtype=np.uint8)
    mapped.add(y)  # the delta, in memory beside the mapped base
    assert np.array_equal(mapped.codes(np.array([52, 3, 50, 49])), np.vstack([y[2], x[3], y[0], x[49]]))
    assert mapped.codes(np.zeros(0, np.int64)).shape == (0, 64)
    with pytest.raises(InvalidInputError, match="rows"):
        mapped.codes(np.array([55]))
    with pytest.raises(InvalidInputError, match="rows"):
        mapped.codes(np.array([-1]))


def test_stored_codes_read_back_from_a_non_flat_index():
    # BIVF keeps no flat storage: the rows asked for are reconstructed (a direct map made once),
    # so the code stage's weighted rescoring works on every factory, rows added later included.
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, (2000, 64), dtype=np.uint8)
    ix = FingerIndex(512, "BIVF8")
    ix.add(x)
    assert np.array_equal(ix.codes(np.array([9, 1999, 0])), x[[9, 1999, 0]])
    y = rng.integers(0, 256, (4, 64), dtype=np.uint8)
    ix.add(y)
    assert np.array_equal(ix.codes(np.array([2003, 5])), np.vstack([y[3], x[5]]))
