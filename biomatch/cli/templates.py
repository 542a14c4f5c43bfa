"""``biomatch extract | quality | convert | verify``: one image or template at a time.

``verify`` takes images or template files in any mix -- native, ISO/IEC 19794-2 (2005, 2011) or
ANSI/INCITS 378, recognised by their magic (``BMT1``, ``FMR``) whatever their name; ``--dpi`` is
needed only when one of them is an image, ``--position`` when a standard record holds several
fingers.

The library is imported inside each command, so that ``biomatch --help`` and usage errors do
not pay for loading the extractor and the native matcher.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..errors import BiomatchError, InvalidInputError
from ._common import EXIT_OK, dpi, dpi_or_auto

__all__ = ["add_parsers", "matcher_thresholds"]

log = logging.getLogger(__name__)

_TEMPLATE_MAGIC = b"BMT1"
_STANDARD_MAGIC = b"FMR\0"  # ISO/IEC 19794-2 (2005, 2011) and ANSI/INCITS 378
_TEMPLATE_FORMATS = ("native", "iso19794-2:2005", "iso19794-2:2011", "ansi378")  # = formats.FORMATS (lazy)
_FMR_LABELS = {"fmr_1e-2": "FMR 1%", "fmr_1e-3": "FMR 0.1%", "fmr_1e-4": "FMR 0.01%"}


def add_parsers(sub) -> None:
    """Add ``extract``, ``quality``, ``convert`` and ``verify`` to the top-level sub-parsers."""
    p = sub.add_parser("extract", help="extract a fingerprint template from an image",
                       description="Extract the minutiae of one image and write a template file.")
    p.add_argument("image", type=Path, metavar="IMAGE",
                   help="TIFF, PNG, BMP, PGM, JPEG, JPEG 2000 or WSQ fingerprint image")
    p.add_argument("--dpi", type=dpi_or_auto, required=True,
                   help="resolution of the image (FVC TIFF tags are wrong), or 'auto' to estimate it from the "
                        "ridge period; a stated dpi at which the ridges are not human-sized is refused")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="template file to write")
    p.add_argument("--format", choices=_TEMPLATE_FORMATS, default="native",
                   help="template format (default: native BMT1)")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("quality", help="fingerprint image quality, 0-100 (NFIQ 2-style)",
                       description="Print the image's quality score, 0-100: 20 points per tenfold lower estimated "
                                   "chance of a false non-match at FMR 0.1%% (biomatch.extract.image_quality).")
    p.add_argument("image", type=Path, metavar="IMAGE")
    p.add_argument("--dpi", type=dpi_or_auto, required=True, help="resolution of the image, or 'auto'")
    p.add_argument("--json", action="store_true", help="the score and its features as JSON")
    p.set_defaults(func=cmd_quality)

    p = sub.add_parser("convert", help="convert a template between native, ISO 19794-2 and ANSI 378",
                       description="Read a template record (format sniffed unless --from) and write it in "
                                   "another format. Coordinates are converted through 500 dpi.")
    p.add_argument("input", type=Path, metavar="IN")
    p.add_argument("output", type=Path, metavar="OUT")
    p.add_argument("--to", choices=_TEMPLATE_FORMATS, required=True, dest="to_format")
    p.add_argument("--from", choices=_TEMPLATE_FORMATS, default=None, dest="from_format",
                   help="input format (default: recognised from the content)")
    p.add_argument("--dpi", type=dpi, default=500.0, help="resolution of a written ISO/ANSI record (default 500)")
    p.add_argument("--in-dpi", type=dpi, default=None, dest="in_dpi",
                   help="true resolution of the input record, replacing its resolution fields (for writers "
                        "known to state a wrong one, e.g. afis ISO 2011; never guessed)")
    p.add_argument("--foreign", choices=("afis-iso2005", "nbis-py-iso2005"), default=None,
                   help="the input comes from this non-conformant writer: convert its layout first "
                        "(biomatch.formats.foreign); nbis-py needs --in-dpi")
    p.add_argument("--position", type=int, default=None,
                   help="keep only the views of this finger position code (needed for --to native "
                        "when the input holds several views)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("verify", help="compare two fingerprints (images or templates)",
                       description="Print the score of A against B and the decision at each documented "
                                   "threshold. A and B are images or template files in any mix: native, "
                                   "ISO/IEC 19794-2 (2005, 2011) or ANSI/INCITS 378, recognised by content.")
    p.add_argument("a", type=Path, metavar="A")
    p.add_argument("b", type=Path, metavar="B")
    p.add_argument("--dpi", type=dpi, help="resolution of the image(s); required when A or B is an image")
    p.add_argument("--position", type=int, default=None,
                   help="finger position code of the view to compare when a standard record holds several")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_verify)


def cmd_extract(args) -> int:
    from .._io import write_private_atomic
    from ..extract import extract
    from ..formats import dump

    cap: dict = {}
    template = extract(args.image, args.dpi, capture=cap)
    try:
        write_private_atomic(args.output, dump(template, args.format))
    except OSError as exc:
        raise BiomatchError(f"-o: cannot write {str(args.output)!r}: {exc.strerror}") from exc
    estimated = f", {cap['dpi']:.0f} dpi (estimated from the ridge period)" if args.dpi == "auto" and "dpi" in cap \
        else ""
    print(f"{args.output}: {len(template)} minutiae, quality {template.quality}{estimated}")
    return EXIT_OK


def cmd_quality(args) -> int:
    from ..extract.image_quality import image_quality

    q = image_quality(args.image, args.dpi)
    if args.json:
        print(json.dumps({"score": q.score, "features": q.features.as_dict()}, indent=1, sort_keys=True))
    else:
        print(q.score)
    return EXIT_OK


def cmd_convert(args) -> int:
    from .._io import write_private_atomic
    from ..formats import dump, load_views

    source = args.input
    in_dpi = args.in_dpi
    if args.foreign is not None:
        from ..formats import foreign

        try:
            raw = args.input.read_bytes()
        except OSError as exc:
            raise BiomatchError(f"IN: cannot read {str(args.input)!r}: {exc.strerror}") from exc
        if args.foreign == "afis-iso2005":
            source = foreign.from_afis_iso2005(raw)
        else:
            if in_dpi is None:
                raise InvalidInputError("--in-dpi: required with --foreign nbis-py-iso2005 (its records state "
                                        "no resolution), got none")
            source, in_dpi = foreign.from_nbis_py_iso2005(raw, in_dpi), None
    views = load_views(source, args.from_format, dpi=in_dpi)
    if args.position is not None:
        views = tuple(v for v in views if v.position == args.position)
    if not views:
        where = "" if args.position is None else f" with finger position {args.position}"
        raise BiomatchError(f"IN: {str(args.input)!r} holds no finger view{where}")
    if args.to_format == "native" and len(views) > 1:
        raise InvalidInputError(f"--to native: a native template holds one finger, {str(args.input)!r} holds "
                                f"{len(views)} views (positions {sorted({v.position for v in views})}); "
                                "pick one with --position")
    data = dump(list(views), args.to_format, dpi=args.dpi)
    try:
        write_private_atomic(args.output, data)
    except OSError as exc:
        raise BiomatchError(f"OUT: cannot write {str(args.output)!r}: {exc.strerror}") from exc
    n = sum(len(v.template) for v in views)
    print(f"{args.output}: {args.to_format}, {len(views)} view(s), {n} minutiae")
    return EXIT_OK


def _template_kind(path: Path) -> str | None:
    """``"native"`` or ``"standard"`` (ISO/IEC 19794-2 2005/2011, ANSI 378) by the file's magic,
    None for anything else (an image)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise BiomatchError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    return {_TEMPLATE_MAGIC: "native", _STANDARD_MAGIC: "standard"}.get(head)


def _load_either(path: Path, dpi: float | None, name: str, position: int | None = None):
    """The template of ``path``: a template file in any supported format (by content, not name)
    or an image extracted at ``dpi``; a standard record with several fingers needs ``position``."""
    kind = _template_kind(path)
    if kind == "native":
        from ..formats import load_native

        return load_native(path)
    if kind == "standard":
        from ..formats import load_views

        views = load_views(path)
        chosen = [v for v in views if position is None or v.position == position]
        if len(chosen) != 1:
            have = sorted(v.position for v in views)
            want = "one finger view" if position is None else f"one view of finger position {position}"
            raise InvalidInputError(f"--position: {name} ({str(path)!r}) must hold {want}; it holds "
                                    f"{len(views)} (positions {have})")
        return chosen[0].template
    if dpi is None:
        raise InvalidInputError(f"--dpi: required because {name} ({str(path)!r}) is an image, not a template")
    from ..extract import extract

    return extract(path, dpi)


def _fmr_key(fmr: float) -> str:
    return f"fmr_{fmr:.0e}".replace("e-0", "e-")  # 0.01 -> "fmr_1e-2"


def matcher_thresholds() -> dict[str, float | None]:
    """The documented decision thresholds of :mod:`biomatch.match`, keyed ``"fmr_1e-2"`` etc.

    Read from ``biomatch.match.THRESHOLDS`` (``{"fmr_1e-2": score, ...}``) or else
    ``biomatch.match.SCORE_AT_FMR`` (``{0.01: score, ...}``); a value of ``None`` means
    "not measured yet". ``{}`` when the matcher publishes neither.
    """
    import importlib

    match = importlib.import_module("biomatch.match")
    raw = getattr(match, "THRESHOLDS", None)
    if raw is None:
        raw = {_fmr_key(float(k)): v for k, v in dict(getattr(match, "SCORE_AT_FMR", None) or {}).items()}
    out: dict[str, float | None] = {}
    for key, value in dict(raw).items():
        try:
            out[str(key)] = None if value is None else float(value)
        except (TypeError, ValueError):
            log.warning("biomatch.match threshold %r is not a number: %r", key, value)
    return out


def cmd_verify(args) -> int:
    a = _load_either(args.a, args.dpi, "A", args.position)
    b = _load_either(args.b, args.dpi, "B", args.position)
    try:
        from ..match import FingerprintMatcher
    except ImportError as exc:
        raise BiomatchError(f"the matcher is not available in this installation: {exc}") from exc
    score = float(FingerprintMatcher(a).match(b))
    thresholds = matcher_thresholds()
    decisions = {k: (None if t is None else score >= t) for k, t in thresholds.items()}
    if args.json:
        print(json.dumps({"score": score, "thresholds": thresholds, "match": decisions,
                          "minutiae": [len(a), len(b)]}))
        return EXIT_OK
    print(f"score: {score:.4f}")
    if not thresholds:
        print("decision: unavailable (the matcher publishes no thresholds)")
    for key, t in sorted(thresholds.items(), key=lambda kv: (kv[1] is None, kv[1] or 0.0)):
        label = _FMR_LABELS.get(key, key)
        if t is None:
            print(f"{label:>10s} (threshold not measured yet): -")
        else:
            print(f"{label:>10s} (threshold {t:g}): {'MATCH' if decisions[key] else 'no match'}")
    return EXIT_OK
