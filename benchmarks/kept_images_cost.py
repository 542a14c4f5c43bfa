"""What keeping images costs per enrolment (``biomatch serve --keep-images``): disk and time.

    .venv/bin/python benchmarks/kept_images_cost.py [--persons 30] [--face PATH]

For ``--persons`` generated ten-finger persons (:mod:`biomatch.datasets.synthetic`, 500 dpi), the
service's image store (:class:`biomatch.service.images.ImageStore`) keeps each person's ten finger
images as the service does (as sent: once as WSQ files, once as PNG files) and, with ``--face``, a face
photograph (kept as sent): sealed (AES-256-GCM under a gallery data key) and in clear.  Prints
the bytes on disk per enrolment (the SQLite file, WAL checkpointed), the bytes of the images
themselves, and the time to seal and commit one enrolment's images.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--persons", type=int, default=30)
    ap.add_argument("--face", type=Path, help="a face photograph (JPEG) kept with every person")
    args = ap.parse_args(argv)
    from biomatch.datasets.synthetic import impression, master
    from biomatch.dedup.encryption import Keyring, LocalKey, new_section
    from biomatch.imaging import wsq
    from biomatch.service.images import ImageStore, encode_finger, subject_owner

    persons = [{p: impression(master(i * 10 + p), 0).image for p in range(1, 11)} for i in range(args.persons)]
    shape = persons[0][1].shape
    sent = {"WSQ": [{p: wsq.encode(img) for p, img in f.items()} for f in persons],
            "PNG": [{p: encode_finger(img) for p, img in f.items()} for f in persons]}
    face = args.face.read_bytes() if args.face else None
    rows = []
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        kek = LocalKey(bytes(range(32)))
        (d / "manifest.json").write_text("{}")
        keyring = Keyring(kek, d / "manifest.json", "bench", new_section(kek, "bench"))
        for fmt in ("WSQ", "PNG"):
            for name, cipher in (("sealed", keyring), ("clear", None)):
                path = d / f"images-{fmt}-{name}.sqlite"
                store = ImageStore(path, cipher)
                times, raw = [], 0
                for i, fingers in enumerate(sent[fmt]):
                    images = {("finger", p): data for p, data in fingers.items()}
                    if face is not None:
                        images[("face", 0)] = face
                    t = time.perf_counter()
                    store.put(subject_owner(f"P-{i}"), images)
                    times.append(time.perf_counter() - t)
                    raw += sum(len(v) for v in images.values())
                store.close()
                db = sqlite3.connect(path)
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                db.close()
                disk = sum(f.stat().st_size for f in d.glob(path.name + "*"))
                rows.append((fmt, name, disk / args.persons, raw / args.persons, statistics.median(times)))
    print(f"{args.persons} persons, ten 500 dpi finger images of {shape[1]}x{shape[0]} px each"
          f"{f' and a face photo of {len(face):,} B' if face else ''}, kept as sent")
    print("| fingers sent as | stored | disk per enrolment | the images themselves | seal + commit (median) |")
    print("|---|---|---:|---:|---:|")
    for fmt, name, disk, raw, t in rows:
        print(f"| {fmt} | {name} | {disk / 1024:,.1f} KiB | {raw / 1024:,.1f} KiB | {t * 1e3:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
