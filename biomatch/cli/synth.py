"""``biomatch synth fvc|tenprint``: generate synthetic fingerprints with ground truth.

``fvc``: an FVC-layout folder (:func:`biomatch.datasets.synthetic.write_fvc`, degradations from
:mod:`biomatch.datasets.degrade`).  ``tenprint``: ten-print cards, rolled prints and 4-4-2 slaps
with truth.json and card.an2k (:func:`biomatch.datasets.tenprint.write_cards`).  This module checks
the output folder, shows progress and prints what was written.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InvalidInputError
from ._common import EXIT_OK, Progress, positive_int

__all__ = ["add_parsers"]


def add_parsers(sub) -> None:
    """Add ``synth`` (kind ``fvc``) to the top-level sub-parsers."""
    p = sub.add_parser("synth", help="generate synthetic fingerprints with ground truth",
                       description="Synthetic fingerprint data (biomatch.datasets.synthetic).")
    ssub = p.add_subparsers(dest="synth_command", required=True, metavar="KIND")
    f = ssub.add_parser("fvc", help="an FVC-layout folder: <finger>_<impression>.png (500 dpi) + .json ground truth")
    f.add_argument("out", type=Path, metavar="OUT")
    f.add_argument("--fingers", type=positive_int, default=10, help="number of fingers (default 10)")
    f.add_argument("--impressions", type=positive_int, default=8, help="impressions per finger (default 8)")
    f.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    f.add_argument("--condition", action="append", default=None, metavar="NAME[:PARAM]",
                   help="degrade every impression (repeatable, applied in order): dry, wet, worn, scars, "
                        "distortion, contact, noise, gamma, resolution (biomatch.datasets.degrade; PARAM in "
                        "the condition's physical unit)")
    f.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    f.set_defaults(func=cmd_synth_fvc)
    t = ssub.add_parser("tenprint", help="ten-print cards: rolled + slap images, truth.json, card.an2k",
                        description="Generated ten-print cards (biomatch.datasets.tenprint): OUT/card_NNNN/ "
                                    "with slap_right4/left4/thumbs.png, rolled_NN.png (NN = the position the card "
                                    "claims), truth.json (boxes, positions, swaps, missing fingers, minutiae) and "
                                    "card.an2k (Type-1, Type-4/14 rolled, Type-14 slaps).")
    t.add_argument("out", type=Path, metavar="OUT")
    t.add_argument("--cards", type=positive_int, default=10, help="number of cards (default 10)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--dpi", type=int, choices=(500, 1000), default=500, help="resolution (default 500)")
    t.add_argument("--swap-rate", type=float, default=0.1, help="share of cards with 1-2 swapped rolled fingers")
    t.add_argument("--hand-swap-rate", type=float, default=0.03, help="share of cards with swapped rolled hands")
    t.add_argument("--missing-rate", type=float, default=0.02, help="share of fingers missing")
    t.add_argument("--plain", action="store_true", help="also write plain_NN.png (each slap finger by its box)")
    t.add_argument("--wsq", action="store_true", help="WSQ-compress the images in card.an2k (default raw)")
    t.add_argument("--first", type=positive_int, default=1, help="number of the first card (default 1)")
    t.add_argument("--capture", type=int, default=0, help="capture number: another card of the same people "
                   "(default 0)")
    t.add_argument("--workers", type=positive_int, default=1, help="processes (default 1; same files whatever N)")
    t.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    t.set_defaults(func=cmd_synth_tenprint)


def cmd_synth_fvc(args) -> int:
    from ..datasets.synthetic import write_fvc

    if args.out.exists() and not args.out.is_dir():
        raise InvalidInputError(f"OUT: expected a new or existing folder, got {str(args.out)!r}, which is a file")
    progress = None
    stage = Progress.stages("synth: ", args.quiet)
    if stage is not None:
        progress = lambda done, total: stage("images", done, total)  # noqa: E731
    folder = write_fvc(args.out, args.fingers, args.impressions, args.seed, progress=progress,
                       conditions=args.condition)
    dpi = 500
    if args.condition:
        first = sorted(folder.glob("*.json"))[0]
        dpi = json.loads(first.read_text()).get("dpi", 500)
    print(f"wrote {args.fingers * args.impressions} impressions of {args.fingers} fingers to {folder} "
          f"({dpi:g} dpi{'; ' + ', '.join(args.condition) if args.condition else ''}; evaluate with: "
          f"biomatch evaluate fvc {folder} --dpi {dpi:g})")
    return EXIT_OK


def cmd_synth_tenprint(args) -> int:
    from ..datasets.tenprint import TenprintParams, write_cards

    if args.out.exists() and not args.out.is_dir():
        raise InvalidInputError(f"OUT: expected a new or existing folder, got {str(args.out)!r}, which is a file")
    if args.seed < 0:
        raise InvalidInputError(f"--seed: expected a non-negative int, got {args.seed}")
    progress = None
    stage = Progress.stages("synth: ", args.quiet)
    if stage is not None:
        progress = lambda done, total: stage("cards", done, total)  # noqa: E731
    params = TenprintParams(write_plain=args.plain, compression="wsq" if args.wsq else "none")
    folder = write_cards(args.out, args.cards, args.seed, dpi=args.dpi, swap_rate=args.swap_rate,
                         hand_swap_rate=args.hand_swap_rate, missing_rate=args.missing_rate, progress=progress,
                         params=params, first=args.first, workers=args.workers, capture=args.capture)
    print(f"wrote {args.cards} ten-print cards to {folder} ({args.dpi} ppi; card_NNNN/truth.json holds the "
          f"ground truth)")
    return EXIT_OK
