"""benchmarks/face_chimeric_data.py: ORL templates per identity, cached; pairing with finger identities."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
from _util import REPO, need_dataset

from biomatch.errors import InvalidInputError


def _module():
    spec = importlib.util.spec_from_file_location("face_chimeric_data", REPO / "benchmarks" / "face_chimeric_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_templates_per_identity_are_cached_and_refreshed(tmp_path):
    m = _module()
    orl = need_dataset("faces/orl")
    root = tmp_path / "orl"
    for ident in ("s1", "s2", "s10"):
        (root / ident).mkdir(parents=True)
        for name in ("1.pgm", "2.pgm"):
            shutil.copy(orl / ident / name, root / ident / name)
    cache = tmp_path / "cache.pkl"
    faces = m.orl_templates(root, cache)
    assert list(faces) == ["s1", "s2", "s10"] and all(len(v) == 2 for v in faces.values())
    again = m.orl_templates(root, cache)
    np.testing.assert_array_equal(again["s2"][1].embedding, faces["s2"][1].embedding)
    assert float(faces["s1"][0].embedding @ faces["s1"][1].embedding) > float(
        faces["s1"][0].embedding @ faces["s2"][0].embedding)
    shutil.copy(orl / "s2" / "3.pgm", root / "s2" / "3.pgm")  # the dataset changed: the cache is rebuilt
    assert len(m.orl_templates(root, cache)["s2"]) == 3


def test_pairing_is_seeded_and_one_to_one():
    m = _module()
    faces = {f"s{i}": [] for i in range(1, 41)}
    fingers = [f"{n}" for n in range(101, 131)]
    a = m.pair_identities(fingers, faces, seed=3)
    assert a == m.pair_identities(fingers, faces, seed=3) and a != m.pair_identities(fingers, faces, seed=4)
    assert list(a) == fingers and len(set(a.values())) == len(fingers)
    with pytest.raises(InvalidInputError, match="finger_ids"):
        m.pair_identities(range(41), faces)
