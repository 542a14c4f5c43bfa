"""Generated ten-print cards (biomatch.datasets.tenprint): layout, truth, swaps, missing fingers, dpi."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from biomatch.datasets.tenprint import SLAPS, TenprintParams, make_card, write_cards
from biomatch.errors import InvalidInputError

SEED = 11


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One card with a swap and missing fingers, written by ``biomatch synth tenprint``."""
    from biomatch import cli

    out = tmp_path_factory.mktemp("cards")
    assert cli.main(["synth", "tenprint", str(out), "--cards", "1", "--seed", str(SEED), "--swap-rate", "1",
                     "--hand-swap-rate", "0", "--missing-rate", "0.25", "--quiet"]) == 0
    folder = out / "card_0001"
    assert folder.stat().st_mode & 0o777 == 0o700 and (folder / "truth.json").stat().st_mode & 0o777 == 0o600
    return folder


def test_progress_per_card(tmp_path, monkeypatch):
    from biomatch.datasets import tenprint

    made = []
    monkeypatch.setattr(tenprint, "make_card", lambda n, seed, params, capture: made.append(n) or
                        tenprint.Card(n, {}, {"card": n}, []))
    monkeypatch.setattr(tenprint, "write_card", lambda folder, c: None)
    seen = []
    write_cards(tmp_path, 3, 1, first=5, progress=lambda d, t: seen.append((d, t)))
    assert made == [5, 6, 7] and seen == [(0, 3), (1, 3), (2, 3), (3, 3)]


@pytest.fixture(scope="module")
def unswapped():
    """The same person and errors but no swap (the missing fingers are drawn first, so they agree)."""
    return make_card(1, SEED, TenprintParams(swap_rate=0.0, hand_swap_rate=0.0, missing_rate=0.25))


def _truth(folder):
    return json.loads((folder / "truth.json").read_text())


def test_layout_and_truth(written):
    t = _truth(written)
    assert t["card"] == 1 and t["seed"] == SEED and t["dpi"] == 500
    for name, (fgp, positions) in SLAPS.items():
        s = t["slaps"][name]
        assert s["fgp"] == fgp and s["image"] == f"slap_{name}.png"
        assert [f["position"] for f in s["fingers"]] == list(positions)
        img = cv2.imread(str(written / s["image"]), cv2.IMREAD_GRAYSCALE)
        assert img.shape == (1500, 1600)
        for f in s["fingers"]:
            if f["missing"]:
                assert f["box"] is None
                continue
            x0, y0, x1, y1 = f["box"]
            assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
            # A fingertip is 10-25 mm wide and 14-35 mm tall at 500 ppi (19.7 px/mm).
            assert 10 * 19.7 * 0.8 < x1 - x0 < 30 * 19.7 and 14 * 19.7 < y1 - y0 < 35 * 19.7
            # The box holds ink: the print is darker than the background around the slap.
            assert img[y0:y1, x0:x1].mean() < np.median(img) - 10
            m = np.array(t["minutiae"][str(f["position"])]["slap"])
            assert len(m) >= 15
            assert (m[:, 0] >= x0).all() and (m[:, 0] < x1).all() and (m[:, 1] >= y0).all() and (m[:, 1] < y1).all()
    for pos, r in t["rolled"].items():
        img = cv2.imread(str(written / r["image"]), cv2.IMREAD_GRAYSCALE)
        assert r["image"] == f"rolled_{int(pos):02d}.png" and img.shape == (750, 800)
        m = np.array(t["minutiae"][str(r["true_position"])]["rolled"])
        assert t["minutiae"][str(r["true_position"])]["rolled_image"] == r["image"]
        assert len(m) >= 20 and (m[:, :2] >= 0).all() and (m[:, 0] < 800).all() and (m[:, 1] < 750).all()


def test_rolled_wider_than_plain(written):
    """Rolled nail to nail: 1.5-2.2x the width of the same finger's plain print."""
    t = _truth(written)
    ratios = []
    for s in t["slaps"].values():
        for f in s["fingers"]:
            r = t["rolled"].get(str(f["position"]))
            if f["missing"] or r is None or r["true_position"] != f["position"]:
                continue
            img = cv2.imread(str(written / r["image"]), cv2.IMREAD_GRAYSCALE)
            cols = np.nonzero((img < np.median(img) - 40).mean(axis=0) > 0.05)[0]
            plain_w = (f["box"][2] - f["box"][0]) * np.cos(np.deg2rad(f["rotation_deg"]))
            ratios.append((cols.max() - cols.min()) / plain_w)
    assert ratios and 1.4 < np.median(ratios) < 2.3


def test_missing_fingers_absent(written):
    t = _truth(written)
    assert t["missing"], "missing_rate 0.25 draws at least one missing finger for this seed"
    holds = {int(p): r["true_position"] for p, r in t["rolled"].items()}
    for pos in t["missing"]:
        assert pos not in holds.values()
        assert str(pos) not in t["minutiae"]
        assert t["missing_codes"][str(pos)] in ("XX", "UP")
    # Every present finger has exactly one rolled file; file numbers are the claimed positions.
    present = sorted(set(range(1, 11)) - set(t["missing"]))
    assert sorted(holds.values()) == present
    assert sorted(p.name for p in written.glob("rolled_*.png")) == sorted(f"rolled_{p:02d}.png" for p in holds)


def test_amputation_codes_and_segments_in_an2k(written):
    from biomatch.formats._an2k_records import RS, US, parse
    from biomatch.formats.an2k import read_enrolment

    t = _truth(written)
    e = read_enrolment(written / "card.an2k")
    assert {13, 14, 15} <= set(e.fingers)
    for s in t["slaps"].values():
        img = cv2.imread(str(written / s["image"]), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(e.fingers[s["fgp"]].pixels, img)
    for p, r in t["rolled"].items():
        img = cv2.imread(str(written / r["image"]), cv2.IMREAD_GRAYSCALE)
        assert e.fingers[int(p)].record_type == 4 and np.array_equal(e.fingers[int(p)].pixels, img)
    amp, seg = {}, {}
    for rec in parse(written / "card.an2k").of_type(14):
        fgp = int(rec.text(13))
        for sub in bytes(rec.fields.get(18, b"")).split(RS):
            if sub:
                pos, code = sub.split(US)
                amp[int(pos)] = code.decode()
        for sub in bytes(rec.fields.get(21, b"")).split(RS):
            if sub:
                pos, left, right, top, bottom = (int(v) for v in sub.split(US))
                seg[pos] = (fgp, [left, top, right + 1, bottom + 1])
    assert amp == {int(p): c for p, c in t["missing_codes"].items()}
    for s in t["slaps"].values():
        for f in s["fingers"]:
            if f["box"] is not None:
                assert seg[f["position"]] == (s["fgp"], f["box"])


def test_swap_recorded_and_files_really_swapped(written, unswapped):
    t = _truth(written)
    assert t["swaps"], "swap_rate 1.0 swaps at least one pair"
    assert unswapped.truth["swaps"] == [] and unswapped.truth["missing"] == t["missing"]
    for a, b in t["swaps"]:
        assert t["rolled"][str(a)]["true_position"] == b and t["rolled"][str(b)]["true_position"] == a
        got_a = cv2.imread(str(written / f"rolled_{a:02d}.png"), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(got_a, unswapped.images[f"rolled_{b:02d}.png"])
        assert not np.array_equal(got_a, unswapped.images[f"rolled_{a:02d}.png"])
    # Slaps are never swapped.
    for name in SLAPS:
        img = cv2.imread(str(written / f"slap_{name}.png"), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(img, unswapped.images[f"slap_{name}.png"])


def test_deterministic_from_seed(written):
    again = make_card(1, SEED, TenprintParams(swap_rate=1.0, hand_swap_rate=0.0, missing_rate=0.25))
    assert again.truth == _truth(written)
    for name, img in again.images.items():
        assert np.array_equal(img, cv2.imread(str(written / name), cv2.IMREAD_GRAYSCALE)), name


def test_hand_swap():
    c = make_card(3, SEED, TenprintParams(swap_rate=0.0, hand_swap_rate=1.0, missing_rate=0.0))
    assert c.truth["hand_swap"] is True
    assert {int(p): r["true_position"] for p, r in c.truth["rolled"].items()} == \
        {p: p + 5 if p <= 5 else p - 5 for p in range(1, 11)}


def test_1000ppi_twice_the_pixels():
    c = make_card(1, SEED, TenprintParams(dpi=1000, swap_rate=0.0, missing_rate=0.0, hand_swap_rate=0.0))
    ref = make_card(1, SEED, TenprintParams(swap_rate=0.0, missing_rate=0.0, hand_swap_rate=0.0))
    assert c.images["slap_right4.png"].shape == (3000, 3200) and c.images["rolled_01.png"].shape == (1500, 1600)
    for name in ("right4", "thumbs"):
        for f1, f5 in zip(c.truth["slaps"][name]["fingers"], ref.truth["slaps"][name]["fingers"]):
            # Same finger, same place: boxes scale by 2 (within the soft edge's few pixels).
            assert np.allclose(np.array(f1["box"]), 2 * np.array(f5["box"]), atol=6)
    # Natively rendered: the ridge edges are as sharp in 1000 ppi pixels as in 500 ppi ones (an
    # upsampled 500 ppi image would have half the gradient per pixel).
    g1 = np.abs(np.diff(c.images["rolled_02.png"].astype(float), axis=1)).mean()
    g5 = np.abs(np.diff(ref.images["rolled_02.png"].astype(float), axis=1)).mean()
    assert g1 > 0.6 * g5
    # Type-14 rolled records at 1000 ppi (Type-4 is 500 ppi only).
    kinds = {r.record_type for r in c.records if r.position <= 10}
    assert kinds == {14} and all(r.ppi == 1000 for r in c.records)


def test_bad_arguments(tmp_path):
    with pytest.raises(InvalidInputError, match="cards"):
        write_cards(tmp_path, 0, 1)
    with pytest.raises(InvalidInputError, match="dpi"):
        write_cards(tmp_path, 1, 1, dpi=600)
    with pytest.raises(InvalidInputError, match="swap_rate"):
        write_cards(tmp_path, 1, 1, swap_rate=1.5)
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidInputError, match="file"):
        write_cards(tmp_path / "f", 1, 1)
    with pytest.raises(InvalidInputError, match="dpi"):
        replace(TenprintParams(), dpi=300)


def test_maps_invert():
    """Rendering uses the inverse maps, ground truth the forward ones: they must agree."""
    from biomatch.datasets.tenprint import _Finger, _plain_layers, _rolled_layer
    from biomatch.datasets._tenprint_skin import grow_skin

    skin = grow_skin(3, "whorl", 8.0, 13.0, 23.0)
    fg = _Finger(2, skin, 8.0)
    rng = np.random.default_rng(0)
    p = TenprintParams()
    layers = [_rolled_layer(fg, rng, p), _plain_layers(fg, rng, p, (30.0, 10.0), 7.0)[0]]
    s, z = np.meshgrid(np.linspace(-6, 6, 13), np.linspace(2, 21, 13))
    for layer in layers:
        px, py = layer.fmap.forward(s, z)
        s2, z2 = layer.fmap.skin_from_local(*layer.fmap.local_from_pixels(px, py))
        assert np.abs(s2 - s).max() < 0.01 and np.abs(z2 - z).max() < 0.01   # mm


def _slap_layers(monkeypatch, params, name="right4", card=3):
    """A slap's layers as make_card builds them, with ridge-less skins (the geometry only: fast)."""
    from biomatch.datasets import tenprint
    from biomatch.datasets._tenprint_skin import FingerSkin

    monkeypatch.setattr(tenprint, "grow_skin", lambda seed, cls, r, half_arc, length: FingerSkin(
        np.zeros((4, 4), np.float32), np.zeros((0, 4)), r, half_arc, length, cls, None))
    rng = np.random.default_rng([5, card, 0x7C4])
    fingers = tenprint._grow_fingers(rng, 5, card, params)
    srng = np.random.default_rng([5, card, 0x5A9])
    layout = tenprint._slap_layout(srng, params, name)
    positions = SLAPS[name][1]
    layers = []
    for pos in positions:
        tip, angle = layout[pos]
        layers += tenprint._plain_layers(fingers[pos], srng, params, tip, angle)
    shape = tenprint._mm_shape(params.slap_width_mm, params.slap_height_mm, params.ppmm)
    return tenprint, layers, positions, shape, srng


def test_pressed_together_tips_flatten_against_each_other_never_superimpose(monkeypatch):
    """Fingers held closer than their tips are wide: neighbouring contacts would overlap by up to
    several mm.  After the generator settles them, no overlap exceeds what flattening absorbs,
    no pixel is printed by two fingers, and the pairs that meet are listed as touching."""
    params = TenprintParams(finger_spacing_mm=12.0, finger_spacing_sd_mm=0.0, hand_rotation_deg=0.0)
    tp, layers, positions, shape, rng = _slap_layers(monkeypatch, params)
    distal = {la.position: la for la in layers if la.kind == "distal"}
    before = [tp._gap(distal[a], distal[b], shape) for a, b in zip(positions, positions[1:])]
    assert min(before) < -params.max_flatten_mm - 0.5, before  # the test has something to settle
    touching = tp._settle(layers, positions, shape, params)
    after = [tp._gap(distal[a], distal[b], shape) for a, b in zip(positions, positions[1:])]
    assert min(after) >= -params.max_flatten_mm - 0.3, after
    assert [t[:2] for t in touching] == [[a, b] for (a, b), g in zip(zip(positions, positions[1:]), after)
                                         if g <= 0.5]
    assert any(t[2] < 0 for t in touching)  # some pairs pressed against each other
    _, contacts = tp._render(shape, layers, rng, params, {(a, b): 0.0 for a, b, _ in touching})
    full = {}
    for pos, ((c0, r0, c1, r1), inside) in contacts.items():
        full[pos] = np.zeros(shape, np.float32)
        full[pos][r0:r1, c0:c1] = inside
    for a, b, gap in touching:
        both = np.minimum(full[a], full[b])
        assert both.max() <= 0.5, (a, b, gap, both.max())
        if gap < -1.0:  # pressed together: they meet along a line (neighbouring pixels)
            import cv2

            near = cv2.dilate((full[a] > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8)) & (full[b] > 0.5)
            assert near.sum() > 5 * params.ppmm  # a contact line, not a point
