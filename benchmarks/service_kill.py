"""SIGKILL of `biomatch serve` during concurrent enrolments, repeated: nothing acknowledged is lost,
nothing is enrolled twice.

    .venv/bin/python benchmarks/service_kill.py [--trials 20] [--clients 4] [--persons 6] [--keep DIR]

One generated gallery (``--persons`` enrolled), one server at a time on a free 127.0.0.1 port.
Per trial: ``--clients`` threads enrol new subjects, each request with its own Idempotency-Key;
after a varying number of acknowledgements (1 to 8, so the kill lands at different moments of
the enrolment path) the server's process group gets SIGKILL; a new server starts on the same
gallery, every acknowledged subject must be found, and every request sent (acknowledged or not)
is retried with its key: each must be answered 200 enrolled, an acknowledged one with its first
answer.  At the end the gallery must hold the initial persons plus every sent subject exactly
once, and the audit chain must verify.  Prints one row per trial and a total; exit status 1
on any failure.  The same trial (2 of them) runs in tests/service/test_service_idempotency.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "service"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--persons", type=int, default=6)
    ap.add_argument("--keep", type=Path, help="work folder (default: a new temporary one)")
    args = ap.parse_args(argv)

    from service_util import enrolled_counts, kill_trial, make_gallery, make_keys

    work = args.keep or Path(tempfile.mkdtemp(prefix="service_kill_"))
    work.mkdir(parents=True, exist_ok=True)
    gallery = make_gallery(work / "g", persons=args.persons)
    keys = make_keys(gallery)
    cols = ("trial", "kill after s", "sent", "acked", "missing", "retry failed", "answer changed", "recovered",
            "audit ok")
    print("\t".join(cols), flush=True)
    all_sent: set = set()
    bad = 0
    totals = dict.fromkeys(("sent", "acked", "missing", "retry_failed", "answer_changed", "recovered"), 0)
    t0 = time.perf_counter()
    for trial in range(args.trials):
        r = kill_trial(gallery, keys, trial, first_person=trial * 10_000, clients=args.clients,
                       acked_before_kill=1 + trial % 8)
        all_sent |= r["subjects"]
        for k in totals:
            totals[k] += r[k]
        bad += bool(r["missing"] or r["retry_failed"] or r["answer_changed"] or not r["audit_ok"] or not r["acked"])
        print(f"{trial}\t{r['kill_after_s']:.2f}\t{r['sent']}\t{r['acked']}\t{r['missing']}\t{r['retry_failed']}\t"
              f"{r['answer_changed']}\t{r['recovered']}\t{r['audit_ok']}", flush=True)
    subjects, present = enrolled_counts(gallery, all_sent)
    twice_or_lost = subjects - args.persons - len(all_sent)
    bad += present != len(all_sent) or twice_or_lost != 0
    print(f"total\t-\t{totals['sent']}\t{totals['acked']}\t{totals['missing']}\t{totals['retry_failed']}\t"
          f"{totals['answer_changed']}\t{totals['recovered']}\t-", flush=True)
    print(f"# {args.trials} trials in {time.perf_counter() - t0:.0f} s; gallery holds {subjects} subjects = "
          f"{args.persons} initial + {len(all_sent)} sent {'exactly once each' if twice_or_lost == 0 and present == len(all_sent) else f'MISMATCH ({twice_or_lost:+d}, {present} present)'}; "
          f"failed trials: {bad}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
