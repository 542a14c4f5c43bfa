"""Child process of the durability and race tests (not collected by pytest).

    python _child.py bulk PATH FIRST_PERSON COUNT     enrol persons one by one; print each acknowledged id
    python _child.py race PATH PERSON IMPRESSION GO   wait for file GO, enrol one record, print the decision
    python _child.py add-shard PATH WHERE             add a shard, SIGKILLed at WHERE: "store" (the new
                                                      shard's store being created) or "manifest" (the
                                                      new manifest being written)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dedup_util import make_record  # noqa: E402

BULK_POSITIONS = (2, 7)


def main(argv: list[str]) -> int:
    from biomatch.dedup import Gallery

    mode, path = argv[0], argv[1]
    if mode == "add-shard":
        import signal

        from biomatch.dedup import manifest, shard

        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)

        g = Gallery.open(path)
        if argv[2] == "store":
            shard.Store = die
        else:
            manifest.write_private_atomic = die
        g.add_shard()
        return 1  # not reached
    with Gallery.open(path) as g:
        if mode == "bulk":
            first, count = int(argv[2]), int(argv[3])
            records = [make_record(f"p{i}", i, 0, BULK_POSITIONS) for i in range(first, first + count)]
            print("ready", flush=True)
            for rec in records:
                report = g.enroll(rec)
                if report.enrolled:
                    print(rec.subject_id, flush=True)
        elif mode == "race":
            person, impression, go = int(argv[2]), int(argv[3]), Path(argv[4])
            rec = make_record(f"race-{os.getpid()}", person, impression)
            print("ready", flush=True)
            while not go.exists():
                time.sleep(0.001)
            report = g.enroll(rec)
            print(f"{report.decision} {int(report.enrolled)} {rec.subject_id}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
