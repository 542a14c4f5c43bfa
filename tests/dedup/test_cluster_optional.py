"""Ray is optional: the embedded gallery and the CLI never import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SCRIPT = r"""
import sys
sys.path.insert(0, {here!r})
from dedup_util import make_record
import biomatch
from biomatch.dedup import Gallery
from biomatch import cli
g = Gallery.create({path!r}, n_shards=2)
g.enroll(make_record("a", 1))
r = g.deduplicate(make_record("b", 1, 1))
assert r.decision == "DUPLICATE", r.decision
g.close()
try:
    cli.main(["gallery", "stats", {path!r}])
except SystemExit:
    pass
print("ray" in sys.modules, "biomatch.dedup.cluster" in sys.modules)
"""


def test_embedded_gallery_never_imports_ray(tmp_path):
    code = SCRIPT.format(here=str(HERE), path=str(tmp_path / "g"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False False", out.stdout
