"""How ``templates.npz`` was made: generated ten-print cards (no real person's data), extracted by biomatch.

    .venv/bin/python tests/data/rolled_plain_codes/make_fixture.py   # from the repository root

The cards of ``benchmarks/rolled_plain.py`` (seed 2026, no swaps, no missing fingers; generated and
extracted once into ``out/rolled_plain``, reused when present): the plain prints of capture 0 of cards
1-30 (the enrolled fingers, 300) and the rolled prints of capture 1 of cards 9, 12, 13 and 16 (the
probes, 40: cards on which the codes before the window ranked several rolled mates low).  Templates
are stored as native BMT bytes without their orientation grids, concatenated, with their offsets,
kinds, cards and positions (``tests/retrieval/test_rolled_codes.py``).
"""

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    import pickle
    from dataclasses import replace

    import rolled_plain as rp
    from biomatch.formats import encode

    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rolled_plain.py"), "--cards", "30", "--no-match"],
                   check=True, cwd=ROOT)
    folder = ROOT / "out" / "rolled_plain"
    known = {}
    for cache in folder.glob("templates_by_image_*.pkl"):
        known.update(pickle.loads(cache.read_bytes()))
    rows = []
    for cap, card, kind, pos, path in rp._items(folder, 30):
        if (cap, kind) == (0, "plain") or ((cap, kind) == (1, "rolled") and card in (9, 12, 13, 16)):
            t = known[str(path.relative_to(folder))][0]
            # minutiae only: the codes read nothing else (no orientation grid: a smaller file)
            rows.append((kind, card, pos, encode(replace(t, orientation_grid=None))))
    blobs = [r[3] for r in rows]
    offsets = np.zeros(len(blobs) + 1, np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    np.savez_compressed(Path(__file__).with_name("templates.npz"), data=np.frombuffer(b"".join(blobs), np.uint8),
                        offsets=offsets, rolled=np.array([r[0] == "rolled" for r in rows]),
                        card=np.array([r[1] for r in rows], np.int16), position=np.array([r[2] for r in rows], np.int8))


if __name__ == "__main__":
    main()
