"""``biomatch gallery import GALLERY SOURCE [--batch N] [--resume]``: an existing registry's templates.

Migrates templates that were extracted elsewhere (native ``.bmt``, ISO/IEC 19794-2 2005/2011,
ANSI 378; the format is recognised from the content, never the extension) into a gallery,
WITHOUT dedup, through :meth:`~biomatch.dedup.Gallery.bulk_enroll` (batches of one transaction,
codes computed per batch).  ``SOURCE`` is one of::

    FOLDER/<subject>/<position>.<ext>   one subfolder per subject, a file per finger named by its
                                        ISO position 1-10 ("1", "01"); a multi-view record is
                                        read for the view of that position
    FOLDER/<subject>.<ext>              one record per subject holding several finger views
                                        (ISO or ANSI; each view's position code 1-10 is used)
    MANIFEST.csv                        subject_id,position,path (an optional header row)
    MANIFEST.jsonl                      {"subject_id": ..., "position": ..., "path": ...} per line

Relative manifest paths are relative to the manifest.  The layout (names, positions, each
subject's positions unique, each subject listed once) is checked before anything is written; a
file that then fails to decode stops the import with an error naming the file and the field,
after the batches before it were committed (none is half-written).  Fix it and run again with
``--resume``: subjects already in the gallery are skipped, the others enrolled, each once.
Progress goes to stderr, a summary line to stdout.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..dedup import Enrolment, Gallery, bulk
from ..dedup.encryption import KeyFile
from ..dedup.records import escape_unprintable
from ..errors import BiomatchError, FormatError, InvalidInputError
from ..formats import load_views
from ..template import FINGER_POSITIONS
from ._common import EXIT_OK, Progress, positive_int
from .inputs import _checked_subject  # the one subject-id rule of the command line

__all__ = ["add_parser"]

_TEMPLATE_EXTS = {".bmt", ".iso", ".ist", ".ansi", ".fmr", ".min", ".tpl"}
_WHOLE_RECORD = 0  # "position" of a per-subject record: every view


def add_parser(gsub) -> None:
    """Add ``import`` to the ``gallery`` sub-parsers."""
    f = gsub.add_parser("import", help="bulk-load an existing registry's templates (NO dedup; resumable)",
                        description="Bulk-load templates (native, ISO 19794-2, ANSI 378) WITHOUT dedup: "
                                    "SOURCE is a folder of <subject>/<position>.<ext> files, a folder of "
                                    "<subject>.<ext> multi-finger records, or a CSV/JSONL manifest "
                                    "subject_id,position,path.")
    f.add_argument("path", type=Path, metavar="GALLERY")
    f.add_argument("source", type=Path, metavar="SOURCE")
    f.add_argument("--batch", type=positive_int, default=5000,
                   help="subjects per transaction (default 5000; a kill loses at most one batch)")
    f.add_argument("--resume", action="store_true", help="skip subjects already enrolled (continue a load)")
    f.add_argument("--threads", type=positive_int, default=None, help="threads of the code kernel (default: CPUs)")
    f.add_argument("--quiet", action="store_true", help="no progress on stderr")
    f.add_argument("--key-file", type=Path, metavar="FILE",
                   help="an encrypted gallery's key file (default: the key in BIOMATCH_GALLERY_KEY)")
    f.set_defaults(func=cmd_import)


def _bad(where: str, field: str, expected: str, got: str) -> InvalidInputError:
    shown = escape_unprintable(got)
    return InvalidInputError(f"{where}, {field}: expected {expected}, got '{shown[:120]}'")


def _position(text: str, where: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit() and int(value) in FINGER_POSITIONS):
        raise _bad(where, "position", "an ISO finger position 1-10", value)
    return int(value)


def _scan_folder(source: Path) -> list[tuple[str, int, Path, str]]:
    rows = []
    for entry in sorted(source.iterdir()):
        where = f"SOURCE '{escape_unprintable(str(entry))}'"
        if entry.is_dir():
            subject = _checked_subject(entry.name, where)
            for f in sorted(entry.iterdir()):
                if f.suffix.lower() in _TEMPLATE_EXTS:
                    fw = f"SOURCE file '{escape_unprintable(str(f))}'"
                    rows.append((subject, _position(f.stem, fw), f, fw))
        elif entry.suffix.lower() in _TEMPLATE_EXTS:
            rows.append((_checked_subject(entry.stem, where), _WHOLE_RECORD, entry, where))
    return rows


def _scan_manifest(source: Path) -> list[tuple[str, int, Path, str]]:
    import csv

    rows = []
    try:
        with open(source, newline="", encoding="utf-8-sig") as fh:
            if source.suffix.lower() == ".jsonl":
                items = []
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    where = f"MANIFEST line {n}"
                    try:
                        d = json.loads(line)
                    except ValueError as exc:
                        raise _bad(where, "line", "a JSON object", f"{line.strip()[:60]} ({exc})") from None
                    if not isinstance(d, dict):
                        raise _bad(where, "line", "a JSON object", line.strip())
                    for key in ("subject_id", "position", "path"):
                        if key not in d:
                            raise _bad(where, key, "a value", "nothing")
                    items.append((where, str(d["subject_id"]), str(d["position"]), str(d["path"])))
            else:
                reader = csv.reader(fh)
                items = []
                for row in reader:
                    where = f"MANIFEST line {reader.line_num}"
                    if not row:
                        continue
                    if not items and len(row) > 1 and row[1].strip().lower() in ("position", "pos", "finger", "fgp"):
                        continue  # the header row
                    if len(row) != 3:
                        raise _bad(where, "row", "3 columns subject_id,position,path", ",".join(row))
                    items.append((where, row[0], row[1], row[2]))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"MANIFEST {str(source)!r}: expected a readable UTF-8 CSV or JSONL file ({exc})") \
            from None
    for where, sid, pos, path in items:
        if "\0" in sid + pos + path:
            raise _bad(where, "path", "no NUL character", sid + pos + path)
        if not path.strip():
            raise _bad(where, "path", "a template file name", path)
        p = Path(path.strip())
        rows.append((_checked_subject(sid.strip(), where), _position(pos, where),
                     p if p.is_absolute() else source.parent / p, where))
    return rows


def read_source(source: Path) -> list[tuple[str, dict]]:
    """``[(subject_id, {position or 0: (path, where)})]`` of a folder or manifest, the layout checked.

    Raises
    ------
    InvalidInputError
        Missing source, a bad name or row (naming the file or line and the field), a position or
        a subject given twice.
    """
    source = Path(source)
    if source.is_dir():
        rows = _scan_folder(source)
    elif source.is_file():
        rows = _scan_manifest(source)
    else:
        raise InvalidInputError(f"SOURCE: expected a folder of templates or a CSV/JSONL manifest, got "
                                f"'{escape_unprintable(str(source))}'")
    subjects: dict[str, dict] = {}
    for sid, pos, path, where in rows:
        files = subjects.setdefault(sid, {})
        if pos in files or (files and (pos == _WHOLE_RECORD or _WHOLE_RECORD in files)):
            raise _bad(where, "position", f"each position of subject '{escape_unprintable(sid)}' once "
                       f"(and a per-subject record alone)", str(pos or "all views"))
        files[pos] = (path, where)
    return list(subjects.items())


def _fingers(files: dict) -> dict:
    """Decoded templates of one subject; a bad file raises naming it (and the field and byte
    offset, as the codec reports them)."""
    out = {}
    for pos, (path, where) in files.items():
        try:
            views = load_views(path)
            if pos != _WHOLE_RECORD:
                # A file named by its position: its one view (position code 0 "unknown", as in a
                # native template, or the same code), or the view of that position in a record.
                chosen = [v for v in views if v.position == pos] or \
                    [v for v in views if len(views) == 1 and v.position == 0]
                if not chosen:
                    raise FormatError(f"finger position code: expected a view of position {pos} (the file's "
                                      f"name), got positions {[v.position for v in views]}")
                out[pos] = chosen[0].template
                continue
            for v in views:
                if v.position not in FINGER_POSITIONS:
                    raise FormatError(f"finger position code: expected 1-10, got {v.position}")
                if v.position in out:
                    raise FormatError(f"finger position code: expected each position once, got {v.position} twice")
                out[v.position] = v.template
        except FormatError as exc:
            err = FormatError(f"{where}: {exc}")  # str(exc) already names the byte offset
            err.offset = exc.offset
            raise err from None
    return out


def _records(subjects: list):
    for sid, files in subjects:
        yield Enrolment(sid, _fingers(files))


class _Counted(list):
    """The subjects as a sized iterable of Enrolments, decoded lazily (in the loader's thread)."""

    def __iter__(self):
        return _records(list.__iter__(self))


def pending(gallery, subjects: list) -> _Counted:
    """The subjects of :func:`read_source` not yet enrolled (a resumed import neither reads nor
    codes the others; the loader checks again under the write lock)."""
    done = bulk.enrolled_among(gallery, [sid for sid, _ in subjects])
    return _Counted([s for s in subjects if s[0] not in done])


def cmd_import(args) -> int:
    import sys

    listed = read_source(args.source)
    with Gallery.open(args.path, key=None if args.key_file is None else KeyFile(args.key_file)) as g:
        subjects = pending(g, listed) if args.resume else _Counted(listed)
        bar = Progress(len(subjects), "import", args.quiet)
        before = g.stats()["subjects"]
        try:
            n = g.bulk_enroll(subjects, batch_size=args.batch, skip_enrolled=args.resume, n_threads=args.threads,
                              progress=lambda done, total: bar.update(done))
        except BiomatchError:
            got = g.stats()["subjects"] - before
            print(f"biomatch: {got} subjects were committed before the error; fix the input and run the same "
                  f"command with --resume", file=sys.stderr)
            raise
        after = g.stats()["subjects"]
    print(f"# imported {n} subjects from {args.source}; skipped (already enrolled) {len(listed) - n}; "
          f"gallery holds {after} subjects")
    return EXIT_OK
