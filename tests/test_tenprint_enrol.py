"""``biomatch gallery enroll REGISTRY transaction.an2k``: each step, bad transactions refused with nothing
enrolled, missing fingers as missing (no evidence) in fusion."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from _util import need_dataset
from biomatch import decide
from biomatch.cli import main
from biomatch.dedup import Enrolment, Gallery
from biomatch.dedup.tenprint import read_tenprint
from biomatch.errors import FormatError, TransactionError
from biomatch.formats.an2k import parse


@pytest.fixture(scope="module")
def sample():
    return need_dataset("samples/nist_libbiomeval/type4-slaps.an2k").read_bytes()


@pytest.fixture(scope="module")
def intake(sample):
    return read_tenprint(sample, "nist-card")


def _with_record(data: bytes, fgp: int, record: bytes) -> bytes:
    """The transaction with its binary record of position ``fgp`` replaced by ``record`` (same type)."""
    t = parse(data)
    out = b""
    for rec in t.records:
        raw = data[rec.offset:rec.offset + rec.length]
        if rec.type == 4 and rec.fields["FGP"][0] == fgp:
            raw = record
        out += raw
    return out


def _type4(idc: int, fgp: int, pixels: np.ndarray, imp: int = 2, gca: int = 0, data: bytes | None = None,
           length: int | None = None) -> bytes:
    h, w = pixels.shape
    payload = pixels.tobytes() if data is None else data
    n = 18 + len(payload) if length is None else length
    return (struct.pack(">IBB", n, idc, imp) + bytes([fgp, 255, 255, 255, 255, 255]) + bytes([0])
            + struct.pack(">HHB", w, h, gca) + payload)


def _subjects(path) -> int:
    with Gallery.open(path, read_only=True) as g:
        return g.stats()["subjects"]


def test_intake_steps_on_the_nist_card(intake):
    names = [s.name for s in intake.steps]
    assert names == ["read", "segment", "segment", "extract", "sequence", "quality"]
    assert all(s.ok for s in intake.steps)
    assert sorted(intake.enrolment.fingers) == list(range(1, 11))
    assert intake.sources[1] == intake.sources[6] == "plain" and intake.sources[2] == "slap"
    assert intake.sequence is None and intake.missing == {}
    assert intake.enrolment.metadata["tenprint"]["sequence"] is None


def test_cli_enrol_then_dedup_finds_the_duplicate(tmp_path, sample, capsys):
    src = tmp_path / "card.an2k"
    src.write_bytes(sample)
    g = tmp_path / "g"
    assert main(["gallery", "create", str(g)]) == 0
    assert main(["gallery", "enroll", str(g), str(src), "--subject", "A-1"]) == 0
    out = capsys.readouterr().out
    for step in ("read: ok", "segment: ok: right4", "segment: ok: left4", "extract: ok", "sequence: ok: skipped",
                 "quality: ok", "dedup: UNIQUE, enrolled"):
        assert step in out
    assert main(["gallery", "dedup", str(g), str(src), "--subject", "A-2"]) == 0
    out = capsys.readouterr().out
    assert "dedup: DUPLICATE" in out and "A-1" in out
    assert main(["gallery", "enroll", str(g), str(src), "--subject", "A-1"]) == 0
    assert "already enrolled" in capsys.readouterr().out
    assert _subjects(g) == 1


@pytest.fixture()
def gallery(tmp_path):
    g = tmp_path / "g"
    assert main(["gallery", "create", str(g)]) == 0
    return g


def _refused(gallery, tmp_path, data: bytes, capsys, expect: str) -> str:
    src = tmp_path / "bad.an2k"
    src.write_bytes(data)
    assert main(["gallery", "enroll", str(gallery), str(src), "--subject", "B-1"]) == 2
    err = capsys.readouterr()
    assert expect in err.err, err.err
    assert _subjects(gallery) == 0
    return err.out


def test_slap_with_fewer_fingers_than_declared_is_refused(sample, gallery, tmp_path, capsys):
    """The right slap with its middle finger wiped (Type-4: no AMP field, so all four are declared)."""
    from biomatch.formats.an2k import read_enrolment

    img = next(i for i in read_enrolment(sample).finger_images if i.position == 13).pixels.copy()
    img[:, 370:740] = 255
    data = _with_record(sample, 13, _type4(4, 13, img))
    with pytest.raises(TransactionError, match=r"FGP 13\): declares fingers \[2, 3, 4, 5\], the image shows "
                                               r"\[2, 4, 5\]; \[3\] not found"):
        read_tenprint(data, "x")
    out = _refused(gallery, tmp_path, data, capsys, "[3] not found")
    assert "segment: FAILED" in out


def test_corrupt_image_inside_a_valid_record_is_refused(sample, gallery, tmp_path, capsys):
    t = parse(sample)
    rec = next(r for r in t.records if r.type == 4 and r.fields["FGP"][0] == 13)
    payload = bytearray(rec.fields["DATA"])
    payload[:64] = bytes(64)  # the WSQ markers (SOI, tables) gone, the record's lengths intact
    data = _with_record(sample, 13, sample[rec.offset:rec.offset + 18] + bytes(payload))
    with pytest.raises(FormatError, match="Type-4"):
        read_tenprint(data, "x")
    _refused(gallery, tmp_path, data, capsys, "Type-4")


@pytest.mark.parametrize("length", [17, 10**6])
def test_type4_record_with_a_wrong_length_is_refused(sample, gallery, tmp_path, capsys, length):
    t = parse(sample)
    rec = next(r for r in t.records if r.type == 4 and r.fields["FGP"][0] == 13)
    raw = bytearray(sample[rec.offset:rec.offset + rec.length])
    raw[:4] = struct.pack(">I", length)
    data = _with_record(sample, 13, bytes(raw))
    with pytest.raises(FormatError, match="LEN"):
        read_tenprint(data, "x")
    _refused(gallery, tmp_path, data, capsys, "LEN")


def test_uncompressed_record_with_too_few_bytes_is_refused(sample, gallery, tmp_path, capsys):
    img = np.full((600, 1600), 255, np.uint8)
    data = _with_record(sample, 13, _type4(4, 13, img, data=img.tobytes()[:-100]))
    _refused(gallery, tmp_path, data, capsys, "needs 960000 bytes")


def test_missing_fingers_are_missing_not_mismatches(tmp_path, intake):
    """A record without its little fingers (amputated) is found as the same person, scored on the
    eight fingers both hold: the fused score is exactly fuse() of those eight, no term for 5 and 10."""
    full = intake.enrolment
    with Gallery.create(tmp_path / "g") as g:
        g.enroll(full)
        eight = Enrolment("probe", {p: t for p, t in full.fingers.items() if p not in (5, 10)},
                          metadata={"tenprint": {"missing": {"5": "XX", "10": "UP"}}})
        rep = g.deduplicate(eight)
    top = rep.candidates[0]
    assert rep.decision == "DUPLICATE" and top.subject_id == full.subject_id
    assert sorted(top.finger_scores) == [1, 2, 3, 4, 6, 7, 8, 9]
    assert top.score == pytest.approx(decide.fuse(top.finger_scores), rel=1e-9)
    # and a missing finger is not evidence against: the same eight scores with two more zero scores
    # (mismatches) would fuse lower
    assert decide.fuse({**top.finger_scores, 5: 0.0, 10: 0.0}) < top.score


# --------------------------------------------------------------------------- Type-14 transactions

@pytest.fixture(scope="module")
def nist_images(sample):
    from biomatch.formats.an2k import read_enrolment

    return {i.position: i.pixels for i in read_enrolment(sample).finger_images}


def _type14_card(nist_images, right4=None, amputated=None, segments=(), rolled=None) -> bytes:
    from biomatch.formats.an2k_write import FingerRecord, write_transaction

    recs = [FingerRecord(nist_images[13] if right4 is None else right4, 500, 13, impression=0, segments=segments,
                         amputated=amputated or {}),
            FingerRecord(nist_images[14], 500, 14, impression=0),
            FingerRecord(nist_images[11], 500, 1, impression=0),   # plain thumbs (the writer takes 1-10,
            FingerRecord(nist_images[12], 500, 6, impression=0)]   # not the plain-thumb codes 11/12)
    for pos, img in (rolled or {}).items():
        recs.append(FingerRecord(img, 500, pos, impression=1))
    return write_transaction(recs, tcn="CARD-14", date="20261207")


def _wipe_middle(img):
    img = img.copy()
    img[:, 370:740] = 255
    return img


def test_type14_amputation_code_is_carried_into_the_enrolment(nist_images):
    data = _type14_card(nist_images, right4=_wipe_middle(nist_images[13]), amputated={3: "XX"})
    intake = read_tenprint(data)
    assert intake.enrolment.subject_id == "CARD-14"  # the TCN
    assert intake.missing == {3: "XX"} and 3 not in intake.enrolment.fingers
    assert intake.enrolment.metadata["tenprint"]["missing"] == {"3": "XX"}
    assert sorted(intake.enrolment.fingers) == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert "3 right middle XX" in intake.steps[0].text


def test_type14_slap_showing_fewer_fingers_than_its_segments_is_refused(nist_images, gallery, tmp_path, capsys):
    from biomatch.formats.an2k_write import Segment

    segs = [Segment(p, *box) for p, box in ((2, (120, 420, 480, 950)), (3, (400, 710, 0, 520)),
                                            (4, (790, 1070, 0, 444)), (5, (1216, 1500, 390, 756)))]
    data = _type14_card(nist_images, right4=_wipe_middle(nist_images[13]), segments=segs)
    with pytest.raises(TransactionError, match=r"declares fingers \[2, 3, 4, 5\].*\[3\] not found"):
        read_tenprint(data, "x")
    _refused(gallery, tmp_path, data, capsys, "[3] not found")


def test_rolled_prints_in_the_wrong_boxes_are_refused_unless_forced(nist_images, gallery, tmp_path, capsys):
    """Rolled 2 and 3 hold each other's finger (the slap fingertips themselves, as rolled records)."""
    from biomatch.extract.slap import segment_slap

    tips = segment_slap(nist_images[13], 500, "right4", quality=False).by_position()
    good = {p: tips[p].image for p in (2, 3, 4, 5)}
    ok = read_tenprint(_type14_card(nist_images, rolled=good), "ok")
    assert ok.sequence is not None and ok.sequence.ok and ok.sources[2] == "rolled"
    swapped = {**good, 2: good[3], 3: good[2]}
    data = _type14_card(nist_images, rolled=swapped)
    from biomatch.errors import SequenceCheckError

    with pytest.raises(SequenceCheckError) as info:
        read_tenprint(data, "x")
    assert info.value.suggested == {2: 3, 3: 2} and info.value.swapped == (2, 3)
    out = _refused(gallery, tmp_path, data, capsys, "rolled 2 is finger 3")
    assert "sequence: FAILED" in out
    src = tmp_path / "forced.an2k"
    src.write_bytes(data)
    assert main(["gallery", "enroll", str(gallery), str(src), "--subject", "F-1", "--force"]) == 0
    out = capsys.readouterr().out
    assert "sequence: FAILED" in out and "FORCED" in out and "enrolled" in out
    assert _subjects(gallery) == 1


def test_reorder_enrols_the_rolled_prints_where_the_check_puts_them(nist_images):
    from biomatch.decide.sequence import check_sequence
    from biomatch.extract.slap import segment_slap

    tips = segment_slap(nist_images[13], 500, "right4", quality=False).by_position()
    good = {p: tips[p].image for p in (2, 3, 4, 5)}
    data = _type14_card(nist_images, rolled={**good, 2: good[3], 3: good[2]})
    intake = read_tenprint(data, "r", reorder=True)
    assert intake.enrolment.metadata["tenprint"]["sequence"] == "reordered"
    assert "REORDERED" in intake.steps[-2].text
    # enrolled in the suggested order: each rolled print now sits at its own slap position
    from biomatch.extract import extract

    slap = {p: extract(tips[p].image, 500) for p in (2, 3, 4, 5)}
    enrolled = {p: intake.enrolment.fingers[p] for p in (2, 3, 4, 5)}
    assert check_sequence(enrolled, slap).ok
    assert not read_tenprint(data, "f", force=True).sequence.ok


def test_rolled_print_in_the_box_of_a_declared_missing_finger_is_a_swap(nist_images):
    """Finger 3 unable to print (UP), and the operator rolled finger 4 into box 3 (box 4 empty): the
    contradiction goes to the sequence check, which moves rolled 3 to 4; --reorder enrols it there."""
    from biomatch.errors import SequenceCheckError
    from biomatch.extract.slap import segment_slap

    tips = segment_slap(nist_images[13], 500, "right4", quality=False).by_position()
    rolled = {2: tips[2].image, 3: tips[4].image, 5: tips[5].image}
    data = _type14_card(nist_images, right4=_wipe_middle(nist_images[13]), amputated={3: "UP"}, rolled=rolled)
    with pytest.raises(SequenceCheckError) as info:
        read_tenprint(data, "x")
    assert info.value.suggested == {3: 4}
    intake = read_tenprint(data, "x", reorder=True)
    assert 3 not in intake.enrolment.fingers and intake.sources[4] == "rolled"
    assert "rolled and declared UP" in intake.steps[0].text
