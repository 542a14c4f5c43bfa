"""The generated ten-print cards the ten-print benchmarks run on (benchmarks only).

``segmentation.py`` and ``sequence_check.py`` take the same card arguments and either read an
existing folder of cards (``--data``, written by ``biomatch synth tenprint``) or generate them
into a temporary folder that is removed afterwards.  Import this module before numpy: it limits
the numeric libraries to one thread per process (the benchmarks run cards in parallel).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402


def add_card_arguments(ap: argparse.ArgumentParser, *, cards: int, seed: int, swap_rates: bool = False) -> None:
    """The card arguments: ``--cards --seed --dpi --data --offset --missing-rate`` (and the swap
    rates when ``swap_rates``, defaults 0.5 and 0.1)."""
    ap.add_argument("--cards", type=int, default=cards)
    ap.add_argument("--seed", type=int, default=seed)
    ap.add_argument("--dpi", type=int, default=500, choices=[500, 1000])
    ap.add_argument("--data", type=Path, help="an existing folder of generated cards")
    ap.add_argument("--offset", type=int, default=0, help="with --data: skip this many cards first")
    ap.add_argument("--missing-rate", type=float, default=None, help="share of missing fingers when generating")
    if swap_rates:
        ap.add_argument("--swap-rate", type=float, default=0.5, help="share of cards with 1-2 swapped fingers")
        ap.add_argument("--hand-swap-rate", type=float, default=0.1, help="share of cards with the hands swapped")


@contextmanager
def card_folders(args: argparse.Namespace, prefix: str):
    """The card folders to run on (``card_NNNN`` with a ``truth.json``, in order): those of
    ``--data`` (from ``--offset``, at most ``--cards``), or freshly generated ones, removed on exit."""
    tmp = None
    if args.data is None:
        from biomatch.datasets.tenprint import write_cards

        tmp = Path(tempfile.mkdtemp(prefix=prefix))
        kw = {} if args.missing_rate is None else {"missing_rate": args.missing_rate}
        if hasattr(args, "swap_rate"):
            kw.update(swap_rate=args.swap_rate, hand_swap_rate=args.hand_swap_rate)
        t0 = time.perf_counter()
        write_cards(tmp, args.cards, args.seed, dpi=args.dpi, **kw)
        print(f"generated {args.cards} cards at {args.dpi} ppi in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        root = tmp
    else:
        root = args.data
    try:
        cards = sorted(p for p in root.iterdir() if (p / "truth.json").exists())
        yield cards[args.offset:args.offset + args.cards]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
