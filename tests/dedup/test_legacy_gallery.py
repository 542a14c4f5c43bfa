"""A gallery written by an earlier biomatch opens, scores and enrols unchanged after an upgrade.

The fixture (``tests/data/legacy_gallery_bc43d88``, how it was made: ``make_fixture.py`` there) was
written by commit bc43d88, before ``MatchParams`` gained the orientation-field fields: its
manifest and shard store carry the parameter set and hash of that version.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "legacy_gallery_bc43d88" / "gallery"


@pytest.fixture
def legacy(tmp_path):
    dst = tmp_path / "gallery"
    shutil.copytree(FIXTURE, dst)
    return dst


def _probe(subject: int, position: int):
    from biomatch.datasets.synthetic import impression, master
    from biomatch.extract import extract

    return extract(impression(master(1000 + 10 * subject + position), 2).image, 500)


def test_opens_with_the_scores_it_was_built_with(legacy):
    from biomatch.dedup import Gallery
    from biomatch.params import MatchParams

    stored = json.loads((legacy / "manifest.json").read_text())
    assert "orientation_weight" not in stored["match_params"]  # the fixture predates the field
    with Gallery.open(legacy, read_only=True) as g:
        # The field it lacks is read with the value that reproduces that version's scores, not
        # today's default; every stored value is kept.
        assert g.match_params.orientation_weight == 0.0
        assert MatchParams().orientation_weight != 0.0
        for k, v in json.loads(stored["match_params"])["values"].items():
            got = getattr(g.match_params, k)
            assert (list(got) if isinstance(got, tuple) else got) == v, k
        assert g.stats()["subjects"] == 6
        assert g.stats()["match_params_hash"] == stored["match_params_hash"]
        assert g.check() == []


def test_finds_its_people_with_probes_of_the_current_extractor(legacy):
    from biomatch.dedup import Enrolment, Gallery

    with Gallery.open(legacy, read_only=True) as g:
        for s in (0, 3, 5):
            probe = _probe(s, 2)
            assert probe.orientation_grid is not None  # a current template, with the field
            report = g.deduplicate(Enrolment(f"new-{s}", {2: probe, 7: _probe(s, 7)}))
            assert report.decision == "DUPLICATE", (s, report)
            assert report.candidates[0].subject_id == f"legacy-{s}"


def test_enrols_after_the_upgrade_and_reopens(legacy):
    from biomatch.datasets.synthetic import impression, master
    from biomatch.dedup import Enrolment, Gallery
    from biomatch.extract import extract

    fingers = {p: extract(impression(master(5000 + p), 1).image, 500) for p in (2, 7)}
    with Gallery.open(legacy) as g:
        assert g.enroll(Enrolment("after-upgrade", fingers)).decision == "UNIQUE"
    with Gallery.open(legacy, read_only=True) as g:
        assert g.stats()["subjects"] == 7
        assert g.check() == []
        again = {p: extract(impression(master(5000 + p), 2).image, 500) for p in (2, 7)}
        report = g.deduplicate(Enrolment("again", again))
        assert report.decision == "DUPLICATE" and report.candidates[0].subject_id == "after-upgrade"


def test_open_accepts_the_stored_parameters_and_refuses_others(legacy):
    from biomatch.dedup import Gallery
    from biomatch.errors import IncompatibleGalleryError
    from biomatch.params import MatchParams

    with Gallery.open(legacy, read_only=True) as g:
        mine = g.match_params
    with Gallery.open(legacy, read_only=True, match_params=mine):
        pass
    with pytest.raises(IncompatibleGalleryError, match="match_params"):
        Gallery.open(legacy, read_only=True, match_params=MatchParams())  # today's defaults differ


def test_an_edited_parameter_set_is_still_refused(legacy):
    from biomatch._io import canonical_checksum
    from biomatch.dedup import Gallery
    from biomatch.errors import IncompatibleGalleryError

    path = legacy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["match_params"] = manifest["match_params"].replace('"radius_px":70.0', '"radius_px":60.0')
    manifest["checksum"] = canonical_checksum(manifest)  # re-sealed: only the parameter hash can tell
    path.write_text(json.dumps(manifest))
    with pytest.raises(IncompatibleGalleryError, match="match parameter hash"):
        Gallery.open(legacy, read_only=True)


def test_templates_of_a_declared_lineage_are_accepted_others_refused(tmp_path, monkeypatch):
    """A gallery fixed at an earlier extraction generation accepts the current extractor's
    templates only when that generation is declared one scale with it (EXTRACTION_LINEAGE)."""
    from biomatch import params
    from biomatch.datasets.synthetic import impression, master
    from biomatch.dedup import Enrolment, Gallery
    from biomatch.errors import IncompatibleTemplateError
    from biomatch.extract import extract

    earlier = "0123456789abcdef"
    fingers = {2: extract(impression(master(7002), 1).image, 500)}
    with Gallery.create(tmp_path / "g", template_params_hash=earlier) as g:
        with pytest.raises(IncompatibleTemplateError, match="lineage"):
            g.enroll(Enrolment("a", fingers))
        monkeypatch.setattr(params, "EXTRACTION_LINEAGE", (earlier,))
        assert g.enroll(Enrolment("a", fingers)).decision == "UNIQUE"
        stranger = params.ExtractionParams(block_size_px=12)  # a generation outside the lineage
        odd = extract(impression(master(7003), 1).image, 500, stranger)
        with pytest.raises(IncompatibleTemplateError):
            g.enroll(Enrolment("b", {2: odd}))
