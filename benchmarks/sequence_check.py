#!/usr/bin/env python
"""Sequence check on generated ten-print cards: swaps caught, correct cards passed.

Cards are generated (:func:`biomatch.datasets.tenprint.write_cards`) with operator errors drawn by
rate -- 1-2 swapped rolled fingers, swapped hands -- and each card's transaction (``card.an2k``:
rolled prints and slaps, amputation codes) goes through the enrolment intake
(:func:`biomatch.dedup.tenprint.read_tenprint`: slap segmentation, extraction, the sequence check of
:mod:`biomatch.decide.sequence`), exactly as ``biomatch gallery enroll REGISTRY card.an2k`` does.

Reported, against ``truth.json``:

- caught: share of cards with a swap or a hand swap that the check flags (target >= 99%), and the
  share whose suggested order is exactly the truth (every swapped position mapped back);
- false flags: share of correct cards flagged (target <= 0.5%);
- errors: cards the intake refused for another reason (a slap finger not found...).

Usage::

    .venv/bin/python benchmarks/sequence_check.py --cards 400 [--seed 7] [--swap-rate 0.5]
                                                  [--hand-swap-rate 0.1] [--dpi 500] [--workers 2] [--json]
"""

from __future__ import annotations

import _tenprint_cards  # noqa: F401  (first: one numeric thread per process)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402


def truth_order(truth: dict) -> dict:
    """Claimed position -> true position, for the rolled prints that are not where claimed."""
    return {int(c): int(r["true_position"]) for c, r in truth["rolled"].items()
            if int(r["true_position"]) != int(c)}


def run_card(card: str) -> dict:
    from biomatch.dedup.tenprint import read_tenprint
    from biomatch.errors import BiomatchError

    card = Path(card)
    truth = json.loads((card / "truth.json").read_text())
    moved = truth_order(truth)
    out = {"card": card.name, "swapped": bool(moved), "hand_swap": bool(truth.get("hand_swap")), "truth": moved}
    t0 = time.perf_counter()
    try:
        intake = read_tenprint(card / "card.an2k", "x", force=True)
    except BiomatchError as exc:
        out["error"] = str(exc)
        return out
    out["seconds"] = time.perf_counter() - t0
    seq = intake.sequence
    if seq is None:
        out["error"] = "no sequence check (no rolled prints or no slaps)"
        return out
    out["flagged"] = not seq.ok
    out["suggested"] = {int(a): int(b) for a, b in seq.suggested.items()}
    out["exact"] = out["suggested"] == moved
    out["hand_swap_reported"] = seq.hand_swap
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _tenprint_cards.add_card_arguments(ap, cards=100, seed=7, swap_rates=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    with _tenprint_cards.card_folders(args, "biomatch_seq_") as folders:
        cards = [str(p) for p in folders]
        if args.workers > 1:
            with ProcessPoolExecutor(args.workers) as pool:
                results = list(pool.map(run_card, cards))
        else:
            results = [run_card(c) for c in cards]
    ok = [r for r in results if "error" not in r]
    bad = [r for r in ok if r["swapped"]]
    good = [r for r in ok if not r["swapped"]]
    hands = [r for r in bad if r["hand_swap"]]
    caught = sum(r["flagged"] for r in bad)
    exact = sum(r["exact"] for r in bad)
    false = sum(r["flagged"] for r in good)
    summary = {"cards": len(results), "errors": len(results) - len(ok), "swapped_cards": len(bad),
               "caught": caught, "caught_share": caught / max(len(bad), 1), "exact_order": exact,
               "hand_swap_cards": len(hands), "hand_swaps_reported": sum(r["hand_swap_reported"] for r in hands),
               "correct_cards": len(good), "false_flags": false, "false_flag_share": false / max(len(good), 1),
               "seconds_per_card": sum(r.get("seconds", 0) for r in ok) / max(len(ok), 1)}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"{len(results)} cards ({summary['seconds_per_card']:.1f} s each): swapped {len(bad)}, caught {caught} "
              f"({100 * summary['caught_share']:.1f}%, target >= 99%), exact suggested order {exact}; hand swaps "
              f"{len(hands)}, reported as such {summary['hand_swaps_reported']}; correct {len(good)}, flagged "
              f"{false} ({100 * summary['false_flag_share']:.2f}%, target <= 0.5%); refused by the intake (errors) {summary['errors']}")
    for r in results:
        if "error" in r:
            print(f"  error {r['card']}: {r['error']}", file=sys.stderr)
        elif r["swapped"] and not r["flagged"]:
            print(f"  missed {r['card']}: truth {r['truth']}", file=sys.stderr)
        elif not r["swapped"] and r["flagged"]:
            print(f"  false flag {r['card']}: suggested {r['suggested']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
