#!/usr/bin/env python
"""Slap segmentation accuracy on generated ten-print cards (ground truth boxes and positions).

For every slap of every card (right four, left four, thumbs) :func:`biomatch.extract.slap.segment_slap`
runs on the slap image and its fingers are compared with ``truth.json`` (the contract of
:mod:`biomatch.datasets.tenprint`):

- a present finger is *right* when a finger is reported at its position whose box overlaps the
  true box (the distal phalanx's print) with IoU >= 0.8; otherwise it is *loose* (right position,
  IoU < 0.8), *misplaced* (its box found under another position) or *lost*;
- a missing finger (amputated / unable to print: absent from the slap) is *reported* when the
  segmenter lists it as missing, *invented* when it reports a finger there;
- the target (issue 18): right >= 99.5% of the present fingers.

Usage::

    .venv/bin/python benchmarks/segmentation.py --cards 200 [--seed 1] [--dpi 500|1000] [--data DIR]
                                                [--missing-rate R] [--worst K] [--overlays DIR] [--json]

Without ``--data`` the cards are generated into a temporary folder (``write_cards``, the given
seed and dpi) and removed afterwards; with it, an existing folder of cards is read (and
``--cards`` limits how many).  ``--worst K`` lists the K worst fingers (card, slap, position, IoU);
``--overlays DIR`` also draws their slaps.  Fingers whose tips touch a neighbour (``touching`` in
the truth) are counted apart as well.
"""

from __future__ import annotations

import _tenprint_cards  # noqa: F401  (first: one numeric thread per process)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def evaluate_card(card: Path, counts: dict, worst: list, timings: list) -> None:
    from biomatch.errors import BiomatchError
    from biomatch.extract.slap import segment_slap

    truth = json.loads((card / "truth.json").read_text())
    dpi = float(truth["dpi"])
    for kind, slap in truth["slaps"].items():
        touching = {q for pair in slap.get("touching", []) for q in pair[:2]}
        t0 = time.perf_counter()
        try:
            seg = segment_slap(card / slap["image"], dpi, kind, quality=False)
            found = {f.position: f.box for f in seg.fingers}
            rotations = {f.position: f.rotation_deg for f in seg.fingers}
            reported_missing = set(seg.missing)
        except BiomatchError as exc:
            found, reported_missing, rotations = {}, set(), {}
            counts["errors"] += 1
            print(f"{card.name} {kind}: {exc}", file=sys.stderr)
        timings.append(time.perf_counter() - t0)
        for f in slap["fingers"]:
            pos = f["position"]
            if f.get("missing") or f.get("box") is None:
                counts["missing_total"] += 1
                if pos in found:
                    counts["missing_invented"] += 1
                elif pos in reported_missing:
                    counts["missing_reported"] += 1
                continue
            counts["present"] += 1
            counts["touching"] += pos in touching
            box = f["box"]
            if pos in found:
                v = iou(found[pos], box)
                counts["right" if v >= 0.8 else "loose"] += 1
                counts["touching_right"] += pos in touching and v >= 0.8
                if f.get("rotation_deg") is not None:
                    counts.setdefault("rotation_errors", []).append(abs(rotations[pos] - f["rotation_deg"]))
                worst.append((v, card, kind, pos, found[pos], box))
                continue
            others = [q for q, b in found.items() if iou(b, box) >= 0.5]
            counts["misplaced" if others else "lost"] += 1
            worst.append((0.0, card, kind, pos, found.get(others[0]) if others else None, box))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _tenprint_cards.add_card_arguments(ap, cards=50, seed=1)
    ap.add_argument("--worst", type=int, default=5)
    ap.add_argument("--overlays", type=Path, help="write the --worst fingers' slaps here: truth red, found green")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    counts = dict.fromkeys(("present", "right", "loose", "misplaced", "lost", "missing_total",
                            "missing_reported", "missing_invented", "errors", "touching", "touching_right"), 0)
    worst, timings = [], []
    with _tenprint_cards.card_folders(args, "biomatch_seg_") as cards:
        for card in cards:
            evaluate_card(card, counts, worst, timings)
        worst.sort(key=lambda t: t[0])
        if args.overlays is not None:
            write_overlays(args.overlays, worst[: args.worst])
    import numpy as np

    rot = np.asarray(counts.pop("rotation_errors", [0.0]))
    n = max(counts["present"], 1)
    out = {"cards": len(cards), "slaps": len(timings), **counts,
           "right_share": counts["right"] / n,
           "missing_reported_share": counts["missing_reported"] / max(counts["missing_total"], 1),
           "seconds_per_slap": sum(timings) / max(len(timings), 1),
           "rotation_error_deg_median": float(np.median(rot)), "rotation_error_deg_p95": float(np.percentile(rot, 95))}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{len(cards)} cards, {len(timings)} slaps ({out['seconds_per_slap']:.2f} s each): "
              f"{counts['right']} of {counts['present']} present fingers found at the right position with IoU >= 0.8 "
              f"({100 * out['right_share']:.2f}%, target >= 99.5%); loose {counts['loose']}, misplaced "
              f"{counts['misplaced']}, lost {counts['lost']}; missing fingers: {counts['missing_reported']} of "
              f"{counts['missing_total']} reported missing, {counts['missing_invented']} invented; "
              f"errors {counts['errors']}; touching a neighbour {counts['touching']} fingers, "
              f"{counts['touching_right']} right; rotation error median {out['rotation_error_deg_median']:.1f} deg, "
              f"p95 {out['rotation_error_deg_p95']:.1f} deg")
        for v, card, kind, pos, got, box in worst[: args.worst]:
            print(f"  worst: {card.name} {kind} position {pos}: IoU {v:.2f}, found {got}, truth {box}")
    return 0


def write_overlays(folder: Path, worst: list) -> None:
    """Each listed finger's slap, half size: every true box red, every found box green, the finger's
    own boxes thicker (the segmenter run again on the slap)."""
    import cv2

    from biomatch.errors import BiomatchError
    from biomatch.extract.slap import segment_slap

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for v, card, kind, pos, _, _ in worst:
        truth = json.loads((card / "truth.json").read_text())
        slap = truth["slaps"][kind]
        grey = cv2.imread(str(card / slap["image"]), cv2.IMREAD_GRAYSCALE)
        img = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        for f in slap["fingers"]:
            if f["box"] is not None:
                x0, y0, x1, y1 = f["box"]
                cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 255), 6 if f["position"] == pos else 2)
        try:
            found = segment_slap(grey, float(truth["dpi"]), kind, quality=False).fingers
        except BiomatchError:  # a refused slap: the truth only
            found = ()
        for f in found:
            x0, y0, x1, y1 = f.box
            cv2.rectangle(img, (x0, y0), (x1, y1), (0, 170, 0), 6 if f.position == pos else 2)
            cv2.putText(img, str(f.position), (x0 + 8, y1 - 12), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 170, 0), 3)
        cv2.imwrite(str(folder / f"{card.name}_{kind}_{pos}_iou{v:.2f}.png"), cv2.resize(img, None, fx=0.5, fy=0.5))


if __name__ == "__main__":
    sys.exit(main())
