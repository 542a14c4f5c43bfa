"""Score files (CSV) from any system: verification scores and identification candidate lists.

Verification scores (``biomatch evaluate scores``, ``biomatch threshold``)
--------------------------------------------------------------------------
One row per comparison, comma-separated, with a header; columns in any order, others
ignored::

    score,label,subject
    0.412,1,finger_17
    0.013,0,finger_17

- ``score`` (required): similarity, higher = more similar; finite.
- ``label`` (1 genuine, 0 impostor) — or ``kind`` (``genuine`` / ``impostor``), as in the
  ``scores.csv`` written by ``biomatch evaluate fvc --out``.
- ``subject`` (optional): the subject of the comparison (for an impostor comparison, the
  probe's), for the bootstrap over subjects; ``candidate_subject`` (optional) adds the
  other subject of impostor comparisons. Without them, files whose ``probe`` and
  ``candidate`` columns hold FVC names ``<finger>_<impression>`` (biomatch's own
  ``scores.csv``) take the fingers as subjects; otherwise comparisons are resampled.

Identification candidate lists (``biomatch evaluate identification``)
---------------------------------------------------------------------
One row per (probe, candidate)::

    probe,candidate,score,mated
    p1,alice,0.91,1
    p1,bob,0.12,0

- ``probe``, ``candidate``, ``score`` (required); ``mated`` (required): 1 when the
  candidate is the probe's true identity.
- ``probe_mated`` (optional): 1 on every row of a probe whose identity is enrolled; needed
  when lists are truncated (top-L), so that a mate missing from the list is a miss.
  Without it a probe is mated iff one of its rows is.
- The gallery size ``N`` (for penetration rates) is given on the command line, or else
  taken as the number of distinct candidates (right when every list is the whole gallery).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BiomatchError, InvalidInputError
from .identification import SearchOutcomes, outcomes_from_rows

__all__ = ["ScoreSet", "read_scores", "read_searches", "score_set_from_fvc"]

_FVC_NAME = re.compile(r"^(\d+)_(\d+)$")


@dataclass(frozen=True)
class ScoreSet:
    """Genuine and impostor scores of one system on one dataset, with subject ids if known.

    Attributes
    ----------
    genuine, impostor : ndarray of float64, shapes (G,) and (I,)
    genuine_subjects : ndarray of str, shape (G,), or None
    impostor_subjects : ndarray of str, shape (I,) or (I, 2), or None
    subject_source : str
        Where the subjects came from (``""`` when unknown: bootstrap over comparisons).
    source : str
        File or description.
    """

    genuine: np.ndarray
    impostor: np.ndarray
    genuine_subjects: np.ndarray | None = None
    impostor_subjects: np.ndarray | None = None
    subject_source: str = ""
    source: str = ""

    @property
    def n_subjects(self) -> int:
        if self.genuine_subjects is None:
            return 0
        return int(np.unique(np.concatenate([self.genuine_subjects.ravel(), self.impostor_subjects.ravel()])).size)

    def subjects(self) -> dict:
        """Keyword arguments ``genuine_subjects`` / ``impostor_subjects`` for :mod:`.bootstrap`."""
        return {"genuine_subjects": self.genuine_subjects, "impostor_subjects": self.impostor_subjects}


def score_set_from_fvc(result, source: str = "") -> ScoreSet:
    """The :class:`ScoreSet` of an :class:`~biomatch.evaluate.fvc.FvcResult` (all-impostor protocol),
    with fingers as subjects (both fingers of each impostor pair)."""
    finger = np.array([n.split("_")[0] for n in result.names])
    gp, ip = result.pairs["genuine"], result.pairs["impostor"]
    return ScoreSet(np.asarray(result.genuine, np.float64), np.asarray(result.impostor, np.float64),
                    finger[gp[:, 0]], np.stack([finger[ip[:, 0]], finger[ip[:, 1]]], axis=1),
                    "FVC fingers", source)


def _open_rows(path: str | Path, arg: str):
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BiomatchError(f"{arg}: expected a CSV file, got {str(p)!r} which does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BiomatchError(f"{arg}: cannot read {str(p)!r}: {exc}") from exc
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        raise InvalidInputError(f"{arg}: expected a CSV header line, got an empty file {str(p)!r}")
    header = [h.strip().lower() for h in header]
    rows = [r for r in reader if r and any(c.strip() for c in r)]
    if not rows:
        raise InvalidInputError(f"{arg}: expected at least one data row in {str(p)!r}, got only the header")
    return p, header, rows


def _column(p: Path, header: list[str], rows: list[list[str]], name: str, required: bool = True):
    if name not in header:
        if required:
            raise InvalidInputError(f"{p.name}: expected a column {name!r}, got columns {header}")
        return None
    k = header.index(name)
    out = []
    for n, r in enumerate(rows, start=2):
        if k >= len(r):
            raise InvalidInputError(f"{p.name}: line {n}: expected {len(header)} fields (column {name!r}), "
                                    f"got {len(r)}")
        out.append(r[k].strip())
    return out


def _floats(p: Path, values: list[str], name: str) -> np.ndarray:
    out = np.empty(len(values))
    for n, v in enumerate(values):
        try:
            x = float(v)
        except ValueError:
            x = math.nan
        if not math.isfinite(x):
            raise InvalidInputError(f"{p.name}: line {n + 2}: column {name!r}: expected a finite number, got {v!r}")
        out[n] = x
    return out


def _flags(p: Path, values: list[str], name: str, words: dict | None = None) -> np.ndarray:
    allowed = {"0": False, "1": True, "0.0": False, "1.0": True, **(words or {})}
    out = np.empty(len(values), bool)
    for n, v in enumerate(values):
        key = v.lower()
        if key not in allowed:
            exp = "0 or 1" if not words else " or ".join(repr(w) for w in words)
            raise InvalidInputError(f"{p.name}: line {n + 2}: column {name!r}: expected {exp}, got {v!r}")
        out[n] = allowed[key]
    return out


def read_scores(path: str | Path, arg: str = "FILE") -> ScoreSet:
    """Read a verification score file (format in the module docstring).

    Raises
    ------
    BiomatchError
        Missing or unreadable file.
    InvalidInputError
        Missing column, non-finite score, label other than 0/1, or no genuine or no
        impostor row; the message names the file, line and column.
    """
    p, header, rows = _open_rows(path, arg)
    score = _floats(p, _column(p, header, rows, "score"), "score")
    if "label" in header:
        label = _flags(p, _column(p, header, rows, "label"), "label")
    elif "kind" in header:
        label = _flags(p, _column(p, header, rows, "kind"), "kind", {"genuine": True, "impostor": False})
    else:
        raise InvalidInputError(f"{p.name}: expected a column 'label' (1 genuine, 0 impostor) or 'kind', "
                                f"got columns {header}")
    for side, mask in (("genuine (label 1)", label), ("impostor (label 0)", ~label)):
        if not mask.any():
            raise InvalidInputError(f"{p.name}: expected at least one {side} row, got none in {len(rows)} rows")
    subj = _column(p, header, rows, "subject", required=False)
    cand = _column(p, header, rows, "candidate_subject", required=False)
    source = ""
    if subj is not None:
        s = np.array(subj)
        if (s == "").any():
            raise InvalidInputError(f"{p.name}: line {int(np.flatnonzero(s == '')[0]) + 2}: column 'subject': "
                                    "expected a subject id, got an empty field")
        gs = s[label]
        isub = s[~label] if cand is None else np.stack([s[~label], np.array(cand)[~label]], axis=1)
        source = "subject column" + (" + candidate_subject" if cand is not None else "")
    else:
        probe = _column(p, header, rows, "probe", required=False)
        candidate = _column(p, header, rows, "candidate", required=False)
        gs = isub = None
        if probe is not None and candidate is not None:
            mp = [_FVC_NAME.match(x) for x in probe]
            mc = [_FVC_NAME.match(x) for x in candidate]
            if all(mp) and all(mc):
                fp = np.array([m.group(1) for m in mp])
                fc = np.array([m.group(1) for m in mc])
                gs, isub = fp[label], np.stack([fp[~label], fc[~label]], axis=1)
                source = "FVC names (<finger>_<impression>)"
    return ScoreSet(score[label], score[~label], gs, isub, source, str(p))


def read_searches(path: str | Path, gallery_size: int | None = None, arg: str = "FILE") -> SearchOutcomes:
    """Read an identification candidate-list file (format in the module docstring).

    Raises
    ------
    InvalidInputError
        Missing column, non-finite score, flag other than 0/1, a (probe, candidate)
        pair listed twice, inconsistent ``probe_mated``, or a gallery size smaller than a list.
    """
    p, header, rows = _open_rows(path, arg)
    probe = np.array(_column(p, header, rows, "probe"))
    cand = np.array(_column(p, header, rows, "candidate"))
    score = _floats(p, _column(p, header, rows, "score"), "score")
    mated = _flags(p, _column(p, header, rows, "mated"), "mated")
    pm = _column(p, header, rows, "probe_mated", required=False)
    probe_mated = None if pm is None else _flags(p, pm, "probe_mated")
    pairs = np.char.add(np.char.add(probe, "\x00"), cand)
    uniq, first, counts = np.unique(pairs, return_index=True, return_counts=True)
    if (counts > 1).any():
        k = int(first[np.flatnonzero(counts > 1)[0]])
        raise InvalidInputError(f"{p.name}: line {k + 2}: expected each (probe, candidate) once, got "
                                f"({probe[k]!r}, {cand[k]!r}) {int(counts.max())} times")
    n = gallery_size if gallery_size is not None else int(np.unique(cand).size)
    if gallery_size is not None:
        biggest = int(np.unique(probe, return_counts=True)[1].max())
        if gallery_size < biggest:
            raise InvalidInputError(f"--gallery-size: expected at least the longest candidate list ({biggest}), "
                                    f"got {gallery_size}")
    return outcomes_from_rows(probe, score, mated, probe_mated, n)
