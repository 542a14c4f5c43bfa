"""The input of ``biomatch gallery | cluster enroll | dedup``: a folder of images or a CSV manifest.

A folder holds images named ``<subject>_<position>.<ext>`` (ISO position 1-10; the subject may
contain underscores). A manifest is a UTF-8 CSV ``subject_id,position,path[,dpi]`` (relative
paths are relative to the manifest); it may start with a header row, recognised by the name of
its second column (``position``, ``pos``, ``finger``, ``finger_position`` or ``fgp``, any case);
every other row is data. A face image is the position ``face`` (``<subject>_face.jpg``, or a
manifest row ``subject,face,path``).

Every file name or row is checked before anything is searched or enrolled, so that a bad one (a
position that is not 1-10 or ``face``, a blank or unsafe subject id, a NUL character, a field
over the CSV limit of 131,072 characters, a bad dpi, a position given twice) stops the run with
one error line naming the file, or the line and column -- not half-way through a registry.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ..dedup.records import _check_subject_id, escape_unprintable  # see _checked_subject
from ..errors import InvalidInputError, invalid
from ..template import FINGER_POSITIONS

__all__ = ["read_input", "FACE"]

FACE = "face"  # the "position" of a face image in folder names and manifests

_IMAGE_EXTS = {".png", ".tif", ".tiff", ".bmp", ".pgm", ".jpg", ".jpeg", ".wsq"}

# Words naming the position column of a manifest's header row (compared in lower case, without
# spaces, '_' or '-'). The header is recognised by its names, never by a first row that fails to
# parse: such a row is data with an error, reported with its line.
_HEADER_POSITION_NAMES = frozenset({"position", "pos", "finger", "fingerposition", "fingerpos", "fgp"})
_COLUMNS = ("subject_id", "position", "path", "dpi")
_ROW = "subject_id,position,path[,dpi]"


def _is_header(row: list[str]) -> bool:
    return len(row) > 1 and "".join(ch for ch in row[1].lower() if ch.isalnum()) in _HEADER_POSITION_NAMES


def _row_error(where: str, column: str | None, expected: str, actual: str):
    """The error of one manifest row or folder file: where, which column, expected, actual."""
    shown = escape_unprintable(actual)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    field = f", {column}" if column else ""
    return InvalidInputError(f"{where}{field}: expected {expected}, got '{shown}'")


def _parse_position(text: str, where: str):
    """An ISO finger position 1-10 or ``"face"``, else a row error naming ``where``."""
    value = text.strip()
    if value.lower() == FACE:
        return FACE
    if not (value.isascii() and value.isdigit() and int(value) in FINGER_POSITIONS):
        raise _row_error(where, "position", "an ISO finger position 1-10 or 'face'", value)
    return int(value)


def _checked_subject(text: str, where: str) -> str:
    # The id rule is the one Enrolment applies; records exposes it only as a private function
    # (to be made public by the dedup slice: dedup.records.check_subject_id).
    try:
        return _check_subject_id(text)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}, {exc}") from None


def _read_manifest(source: Path) -> list[tuple[str, object, Path, float | None, str]]:
    """Rows ``(subject, position, path, dpi or None, "MANIFEST line N")`` of a CSV manifest.

    The whole file is checked before anything is enrolled: the first bad row raises, naming its
    line (the physical line where the row ends) and column.
    """
    rows = []
    try:
        with open(source, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            first = True
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:  # e.g. "field larger than field limit (131072)"
                    raise InvalidInputError(
                        f"MANIFEST line {reader.line_num}: expected a CSV row {_ROW} with fields of "
                        f"at most {csv.field_size_limit()} characters, got a row the CSV reader refuses "
                        f"({exc})") from None
                where = f"MANIFEST line {reader.line_num}"
                if not row:
                    continue
                if first:
                    first = False
                    if _is_header(row):
                        continue
                for name, x in zip(_COLUMNS, row):
                    if "\0" in x:
                        raise _row_error(where, name, "no NUL character", x)
                if len(row) not in (3, 4):
                    raise _row_error(where, None, f"3 or 4 columns {_ROW} (an optional first row naming them)",
                                     ",".join(row))
                subject = _checked_subject(row[0].strip(), where)
                pos = _parse_position(row[1], where)
                rdpi = None
                if len(row) == 4 and row[3].strip():
                    try:
                        rdpi = float(row[3])
                    except ValueError:
                        rdpi = -1.0
                    if not (math.isfinite(rdpi) and rdpi > 0):
                        raise _row_error(where, "dpi", "a positive number of dots per inch or nothing", row[3])
                if not row[2].strip():
                    raise _row_error(where, "path", "an image file name", row[2])
                path = Path(row[2].strip())
                rows.append((subject, pos, path if path.is_absolute() else source.parent / path, rdpi, where))
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid("MANIFEST", "a readable UTF-8 CSV file", f"{source} ({exc})") from exc
    return rows


def read_input(source: Path, dpi: float | None) -> list[tuple[str, dict, dict]]:
    """Records of a folder or CSV manifest: ``[(subject_id, {position: path}, {position: dpi})]``.

    A manifest's first row is a header when its second column is named ``position`` (or
    ``pos``, ``finger``, ``finger_position``, ``fgp``; any case); any other row is data.  Every
    row is checked before anything is enrolled.

    Raises
    ------
    InvalidInputError
        Missing source; a bad file name or row (the message names the file, or the line and
        the column): a position that is not 1-10 or ``face``, an unsafe or blank subject id, a
        NUL character, a field over the CSV field limit (131,072 characters), a bad dpi; a
        position given twice; no dpi.
    """
    source = Path(source)
    rows: list[tuple[str, object, Path, float | None, str]] = []
    if source.is_dir():
        for f in sorted(source.iterdir()):
            if f.suffix.lower() not in _IMAGE_EXTS:
                continue
            subject, _, pos = f.stem.rpartition("_")
            if not subject or not ((pos.isascii() and pos.isdigit()) or pos.lower() == FACE):
                raise invalid("FOLDER", "image names <subject>_<position 1-10 or 'face'>.<ext>", f.name)
            where = f"FOLDER file '{escape_unprintable(f.name)}'"
            rows.append((_checked_subject(subject, where), _parse_position(pos, where), f, None, where))
    elif source.is_file():
        rows = _read_manifest(source)
    else:
        raise invalid("FOLDER_OR_MANIFEST", "a folder of images or a CSV manifest", str(source))
    records: dict[str, tuple[dict, dict]] = {}
    for subject, pos, path, rdpi, where in rows:
        fingers, dpis = records.setdefault(subject, ({}, {}))
        if pos in fingers:
            what = "one face image" if pos == FACE else "each position once"
            raise _row_error(where, "position", f"{what} per subject ({subject!r})", str(pos))
        fingers[pos] = path
        if pos == FACE:
            continue
        use = rdpi if rdpi is not None else dpi
        if use is None:
            raise invalid("--dpi", "a resolution (or a dpi column in the manifest)", None)
        dpis[pos] = use
    return [(s, f, d) for s, (f, d) in records.items()]
