"""Gallery.subject_info: what is enrolled for a subject, never a template."""

from __future__ import annotations

import pytest

from biomatch.dedup import Gallery, UnknownSubjectError
from dedup_util import make_record


def test_subject_info(tmp_path):
    with Gallery.create(tmp_path / "g") as g:
        g.enroll(make_record("S-1", 1, positions=(2, 7), metadata={"office": "north"}))
        info = g.subject_info("S-1")
        assert info == {"subject_id": "S-1", "positions": [2, 7], "has_face": False, "metadata": {"office": "north"}}
        with pytest.raises(UnknownSubjectError, match="S-2"):
            g.subject_info("S-2")
        g.remove("S-1")
        with pytest.raises(UnknownSubjectError):
            g.subject_info("S-1")
    with Gallery.open(tmp_path / "g", read_only=True) as g, pytest.raises(UnknownSubjectError):
        g.subject_info("S-1")
