"""Child process of the import kill test (not collected by pytest).

    python _import_child.py SOURCE GALLERY BATCH [--resume]

Runs the loader of ``biomatch gallery import`` on SOURCE and prints ``ack N`` (the records of
this run handled so far) after each acknowledged batch, then ``done N`` (subjects inserted).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from biomatch.cli.gallery_import import _Counted, pending, read_source
    from biomatch.dedup import Gallery

    source, path, batch = Path(argv[0]), Path(argv[1]), int(argv[2])
    with Gallery.open(path) as g:
        subjects = pending(g, read_source(source)) if "--resume" in argv else _Counted(read_source(source))
        print("ready", flush=True)
        n = g.bulk_enroll(subjects, batch_size=batch, skip_enrolled="--resume" in argv, n_threads=2,
                          progress=lambda done, total: print(f"ack {done}", flush=True))
    print(f"done {n}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
