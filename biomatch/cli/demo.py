"""``biomatch demo dedup``: enrol a registry, deduplicate a mixed stream, report what was caught.

This is the main job (``make run``): it shows the gallery at work end to end on SOCOFing or on
generated identities (:mod:`.demo_data`), with enrolment and search latencies, memory per
enrolment, the decisions on returning and new people, and FNIR at a target FPIR.

FNIR at a target FPIR: the threshold is set on the top fused scores of the non-mated searches
(the new people, plus each returning person's best *non-mate* candidate, i.e. a search of a
gallery without their mate); FNIR is the fraction of mated searches whose mate does not reach it.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import numpy as np

from ..dedup import Enrolment, Gallery, NoUsableFingerError
from ..errors import FileAccessError, InvalidInputError
from ..retrieval.faiss_retrieval import code_ranking
from ._common import EXIT_OK, Progress, non_negative_int
from .demo_data import background_person, generated, socofing

__all__ = ["add_parsers", "run_demo", "fnir_at_fpir"]


def add_parsers(sub) -> None:
    """Add ``demo`` (``dedup``) to the top-level sub-parsers."""
    p = sub.add_parser("demo", help="end-to-end demonstrations",
                       description="End-to-end demonstrations on shared or generated data.")
    dsub = p.add_subparsers(dest="demo_command", required=True, metavar="DEMO")
    f = dsub.add_parser("dedup", help="enrol a registry, deduplicate a stream, report FNIR/FPIR and timings",
                        description="SOCOFing (DIR/socofing) when present: real prints of subjects 1-200 "
                                    "enrolled, altered-hard prints of 1-200 (returning) and 201-300 (new) searched; "
                                    "otherwise generated identities (2,000 enrolled, 200 returning, 200 new).")
    f.add_argument("--datasets", type=Path, default=None, metavar="DIR",
                   help="shared datasets folder (default $BIOMATCH_DATASETS or ../shared/datasets)")
    f.add_argument("--out", type=Path, default=Path("out/demo_dedup"), metavar="DIR",
                   help="gallery and template cache (default out/demo_dedup)")
    f.add_argument("--quiet", action="store_true", help="no progress bars on stderr")
    f.add_argument("--background", type=non_negative_int, default=0, metavar="N",
                   help="first bulk-load N generated ten-finger people (no dedup) and run the registry among "
                        "them: real searches against a large gallery (default 0)")
    f.set_defaults(func=lambda args: run_demo(args.datasets, args.out, quiet=args.quiet, background=args.background))


def _ms(values) -> str:
    v = np.asarray(values) * 1e3
    return f"median {np.median(v):.0f} ms, p99 {np.percentile(v, 99):.0f} ms"


def fnir_at_fpir(mated: np.ndarray, nonmated: np.ndarray, fpir: float) -> tuple[float, float]:
    """``(FNIR, threshold)``: the lowest threshold whose FPIR on ``nonmated`` is <= ``fpir``."""
    s = np.sort(nonmated)[::-1]
    allowed = int(np.floor(fpir * len(s)))
    t = np.nextafter(s[allowed], np.inf) if allowed < len(s) else -np.inf
    return float(np.mean(mated < t)), float(t)


class _RetrievalStage:
    """Whether the candidate retrieval stage (FAISS) kept a returning person's mate for re-ranking.

    The gallery offers no public view of its retrieval stage, so this reaches the first shard's
    retrieval object through two private attributes (``Gallery._shards``, ``Shard._retrieval``),
    here and nowhere else; the ranking itself is the public
    :func:`~biomatch.retrieval.faiss_retrieval.code_ranking`.
    """

    def __init__(self, gallery: Gallery, subjects: int):
        shard = gallery._shards[0]
        self._shard = shard
        self.retrieval = shard._retrieval
        self.available = hasattr(self.retrieval, "scan")
        self.n_persons = self.retrieval.n_persons if hasattr(self.retrieval, "n_persons") else subjects
        self.k_used = self.retrieval.params.k_persons(self.n_persons) if hasattr(self.retrieval, "params") \
            else self.n_persons

    def kept(self, subject_id: str, fingers: dict) -> bool:
        keys, scores, k = code_ranking(self.retrieval, fingers)
        top = set(keys[np.argsort(-scores, kind="stable")[:k]].tolist())
        return self._shard.subject_key(subject_id) in top


def _prepare_out(out: Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out: expected a new or existing folder, got {str(out)!r}, which is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileAccessError(f"--out: cannot create the folder {str(out)!r}: {exc.strerror or exc}") from exc
    return out


def _enrol(g: Gallery, enrol: list, enrolled_ids: set, quiet: bool) -> dict:
    """Enrol the registry (an operator overrides the false alarms), print its costs; returns the
    gallery's stats."""
    lat_enrol, flagged, unusable = [], [], []
    bar = Progress(len(enrol), "enrol", quiet)
    for i, (sid, fingers) in enumerate(enrol):
        t0 = time.perf_counter()
        try:
            r = g.enroll(Enrolment(sid, fingers), accept_review=True)
        except NoUsableFingerError:
            unusable.append(sid)
            enrolled_ids.discard(sid)
            bar.update(i + 1)
            continue
        lat_enrol.append(time.perf_counter() - t0)
        if not r.enrolled:  # a false alarm among distinct people: the operator overrides it
            flagged.append((sid, r.candidates[0].subject_id, r.candidates[0].score))
            g.enroll(Enrolment(sid, fingers), dedup=False)
        bar.update(i + 1)
    st = g.stats()
    print(f"enrolled {st['subjects']} subjects ({st['fingers']} fingers): {_ms(lat_enrol)} per enrolment "
          f"(dedup + durable insert); {len(flagged)} flagged DUPLICATE at enrolment (false alarms); "
          f"{len(unusable)} with no usable finger")
    print(f"  memory {st['memory_bytes'] / st['subjects'] / 1024:.0f} KiB per enrolment "
          f"(codes + ids {st['retrieval_bytes'] / st['subjects']:.0f} B), disk {st['disk_bytes'] / 2**20:.1f} MiB")
    return st


def _load_background(g: Gallery, n: int, quiet: bool) -> None:
    """Bulk-load ``n`` generated people (ids ``bg<i>``, never searched for: all non-mated)."""
    t0 = time.perf_counter()
    bar = Progress(n, "background", quiet)
    g.bulk_enroll((Enrolment(f"bg{i}", background_person(i)) for i in range(n)), batch_size=2000,
                  progress=lambda done, total: bar.update(done))
    print(f"background: {n} generated people bulk-loaded in {time.perf_counter() - t0:.0f} s (no dedup)")


def run_demo(datasets: Path | None, out: Path, quiet: bool = False,
             generated_sizes: tuple[int, int, int] = (2000, 200, 200), background: int = 0) -> int:
    """Enrol a registry, deduplicate a stream, print what was caught and missed.

    ``generated_sizes`` (enrolled, returning, new) applies when SOCOFing is absent;
    ``background`` generated people are bulk-loaded first (a gallery declared
    ``generated_background``), so that the registry's searches run among them.
    """
    t_all = time.perf_counter()
    if datasets is None:
        datasets = Path(os.environ.get("BIOMATCH_DATASETS", Path(__file__).resolve().parents[2].parent
                                       / "shared" / "datasets"))
    out = _prepare_out(out)
    root = Path(datasets) / "socofing"
    if root.is_dir():
        what, enrol, stream = socofing(root, out / "cache", quiet)
    else:
        print(f"(no {root}: using generated identities)")
        what, enrol, stream = generated(*generated_sizes)
    print(what)
    enrolled_ids = {sid for sid, _ in enrol}
    gpath = out / "gallery"
    if (gpath / "manifest.json").exists():
        shutil.rmtree(gpath)  # the demo's own gallery from a previous run
    with Gallery.create(gpath, generated_background=background > 0) as g:
        if background:
            _load_background(g, background, quiet)
        st = _enrol(g, enrol, enrolled_ids, quiet)
        order = list(range(len(stream)))
        random.Random(11).shuffle(order)
        stage = _RetrievalStage(g, st["subjects"])
        lat, mated, nonmated, hit_stage, outcome = [], [], [], [], []
        bar = Progress(len(stream), "dedup", quiet)
        for j, i in enumerate(order):
            sid, fingers = stream[i]
            is_mated = sid in enrolled_ids
            t0 = time.perf_counter()
            try:
                r = g.deduplicate(Enrolment(sid, fingers))
            except NoUsableFingerError:  # nothing to search with: a mated one is a miss
                outcome.append((sid, is_mated, "NO-FINGER", False, None))
                if is_mated:
                    mated.append(0.0)
                bar.update(j + 1)
                continue
            lat.append(time.perf_counter() - t0)
            mate = [c.score for c in r.candidates if c.subject_id == sid]
            others = [c.score for c in r.candidates if c.subject_id != sid]
            nonmated.append(others[0] if others else 0.0)
            if is_mated:
                mated.append(mate[0] if mate else 0.0)
                if stage.available:
                    hit_stage.append(stage.kept(sid, fingers))
            caught = r.decision == "DUPLICATE" and r.candidates[0].subject_id == sid
            outcome.append((sid, is_mated, r.decision, caught, r.candidates[0] if r.candidates else None))
            bar.update(j + 1)
    _report(stream, outcome, lat, np.asarray(mated), np.asarray(nonmated), hit_stage, stage)
    print(f"total {time.perf_counter() - t_all:.0f} s; gallery in {gpath} (NOT encrypted: the demo runs with no "
          f"key configured; a registry's gallery: biomatch gallery create --encrypt --key-file FILE)")
    return EXIT_OK


def _report(stream, outcome, lat, mated, nonmated, hit_stage, stage) -> None:
    """Print the stream's decisions, the retrieval stage's hit rate and FNIR at two FPIRs."""
    ret = [o for o in outcome if o[1]]
    new = [o for o in outcome if not o[1]]

    def count(rows, decision):
        return sum(1 for o in rows if o[2] == decision)

    print(f"\nstream of {len(stream)}: {len(ret)} returning, {len(new)} new; {_ms(lat)} per search "
          f"(one probe, read only)")
    print(f"  returning: caught {sum(o[3] for o in ret)} as DUPLICATE, {count(ret, 'REVIEW')} REVIEW, "
          f"missed {count(ret, 'UNIQUE') + count(ret, 'NO-FINGER')}; wrong top candidate "
          f"{sum(1 for o in ret if o[4] and o[4].subject_id != o[0] and o[2] != 'UNIQUE')}")
    print(f"  searches without a usable finger: {count(outcome, 'NO-FINGER')} (counted as misses when mated)")
    print(f"  new:       {count(new, 'UNIQUE')} UNIQUE, {count(new, 'REVIEW')} REVIEW, "
          f"{count(new, 'DUPLICATE')} false DUPLICATE")
    missed = [o[0] for o in ret if o[2] in ("UNIQUE", "NO-FINGER")]
    if missed:
        print(f"  missed: {', '.join(sorted(missed)[:12])}{' ...' if len(missed) > 12 else ''}")
    if hit_stage:
        n_pers, k_used = stage.n_persons, stage.k_used
        print(f"FAISS stage: mate kept for re-ranking in {100 * np.mean(hit_stage):.1f}% of returning searches "
              f"at penetration {k_used}/{n_pers} persons ({100 * k_used / max(n_pers, 1):.0f}%)")
    print(f"FNIR/FPIR from fused scores ({len(mated)} mated, {len(nonmated)} non-mated searches: the new people "
          f"and each returning person's best non-mate; resolution {100 / len(nonmated):.2f}% FPIR):")
    for fpir in (0.001, 0.01):
        fnir, t = fnir_at_fpir(mated, nonmated, fpir)
        print(f"  FNIR {100 * fnir:.1f}% at FPIR {100 * fpir:g}% (threshold {t:.2f} decades)")
