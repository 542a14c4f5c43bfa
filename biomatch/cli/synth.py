"""``biomatch synth fvc``: generate an FVC-layout folder of synthetic fingerprints with ground truth.

The generator is :func:`biomatch.datasets.synthetic.write_fvc` (degradations from
:mod:`biomatch.datasets.degrade`); this module checks the output folder, shows progress and
prints the command that evaluates the result.
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
