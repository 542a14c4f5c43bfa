"""How ``gallery/`` was written: by biomatch at commit bc43d88 (before the orientation-field
agreement added fields to MatchParams), to test that a gallery written by an earlier version
opens, scores and enrols unchanged after an upgrade (tests/dedup/test_legacy_gallery.py).

    git worktree add /tmp/old bc43d88 && cd /tmp/old && python3 -m venv .venv
    .venv/bin/pip install -e . && .venv/bin/python make_fixture.py OUT   # then copy OUT/gallery here

Six generated subjects (``legacy-0`` .. ``legacy-5``), fingers 2 and 7: impression 1 of master
``1000 + 10 * s + position``, extracted by that version's extractor.  The test draws its probes
(impression 2) with the current generator.  No real person's data.
"""
import shutil, sys
from pathlib import Path
from biomatch.datasets.synthetic import master, impression
from biomatch.dedup import Gallery, Enrolment
from biomatch.extract import extract

out = Path(sys.argv[1])
if out.exists():
    shutil.rmtree(out)
out.mkdir(parents=True)
g = Gallery.create(out / "gallery")
for s in range(6):
    fingers = {}
    for pos in (2, 7):
        mp = master(1000 + 10 * s + pos)
        fingers[pos] = extract(impression(mp, 1).image, 500)
    rep = g.enroll(Enrolment(f"legacy-{s}", fingers))
    print(s, rep.decision if hasattr(rep, "decision") else rep)
g.close()
