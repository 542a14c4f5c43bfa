"""The gallery folder as a file format: the manifest, its checks, creation and routing.

Layout of a gallery folder (0700; files 0600)::

    manifest.json          format, version, gallery id, parameters and their hashes, counts,
                           routing epochs (the shard count each epoch routes new subjects over),
                           and for an encrypted gallery (format version 2) its key set: the
                           key-encryption key's id and the wrapped data keys (encryption.py)
    gallery.lock           flock'd by writers (enrol, remove) in every process
    shards/000/store.sqlite (+ -wal, -shm)   the source of truth (see store.py)
    shards/000/index/      derived retrieval files, caught up from the store on open

The manifest is replaced atomically with a checksum of its content; routing, parameters and
thresholds come from it, so a damaged one is refused, never used.  ``create`` writes a
``.creating`` marker first and the manifest last, so a folder left by a killed creation is
recognised.  Routing: a new subject goes to shard ``blake2b(subject_id) % n`` of the current
routing epoch; an enrolled one is found on its shard of each epoch, newest first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from .. import params as _params
from .._io import canonical_checksum, write_private_atomic
from ..decide import DecisionParams
from ..errors import CorruptStoreError, IncompatibleGalleryError, NotAGalleryError, StorageError, invalid
from ..params import MatchParams, from_json, params_hash, stored_params_hash, to_json
from ..retrieval.codes import default_model
from ..retrieval.components import registered
from .encryption import check_section, new_section
from .shard import Shard
from .store import Store

__all__ = ["FORMAT", "FORMAT_VERSION", "ENCRYPTED_FORMAT_VERSION", "TEMPLATE_FORMAT", "MANIFEST", "LOCK", "CREATING", "read_manifest",
           "write_manifest", "new_manifest", "gallery_path", "epochs", "homes", "extraction_family",
           "decision_from_json", "undo_create", "discard_interrupted_creation", "discard_orphan_shard"]

log = logging.getLogger(__name__)

FORMAT = "biomatch-gallery"
FORMAT_VERSION = 1
ENCRYPTED_FORMAT_VERSION = 2
"""An encrypted gallery's manifest: versions of biomatch without encryption refuse it (they
would read sealed records as damaged templates)."""
TEMPLATE_FORMAT = "BMT1/1"
MANIFEST = "manifest.json"
LOCK = "gallery.lock"
CREATING = ".creating"  # present while create() builds the folder; the manifest is written last


def extraction_family() -> set[str]:
    """Extraction generations that score on one scale: the current default and its declared lineage."""
    return {params_hash(_params.ExtractionParams()), *_params.EXTRACTION_LINEAGE}


def code_generation(retrieval: str) -> str | None:
    """The finger-code generation a retrieval component depends on (None: no codes)."""
    if retrieval != "faiss":
        return None
    return default_model().generation


def decision_from_json(text: str) -> DecisionParams:
    """The DecisionParams stored in a manifest."""
    return from_json(text, DecisionParams)


def read_manifest(path: Path) -> dict:
    """The checked manifest of the gallery at ``path``.

    Raises
    ------
    NotAGalleryError, CorruptStoreError, IncompatibleGalleryError
    """
    f = path / MANIFEST
    if not path.is_dir():
        raise NotAGalleryError(f"path: expected a gallery folder, {str(path)!r} is not a folder")
    try:
        manifest = json.loads(f.read_text())
    except FileNotFoundError:
        if (path / CREATING).exists():
            raise NotAGalleryError(f"path: {str(path)!r} holds a gallery whose creation was interrupted; "
                                   f"create it again (biomatch gallery create replaces it)") from None
        raise NotAGalleryError(f"path: {str(path)!r} is not a biomatch gallery (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        if (path / "shards").is_dir():  # a gallery's folder: its manifest is damaged
            raise CorruptStoreError(f"manifest {str(f)!r}: unreadable, the file is damaged ({exc}); restore it "
                                    f"from a backup (biomatch gallery restore)") from None
        raise NotAGalleryError(f"path: unreadable manifest {str(f)!r}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise NotAGalleryError(f"path: {str(f)!r} is not a biomatch gallery manifest")
    if "checksum" in manifest and manifest["checksum"] != canonical_checksum(manifest):
        # routing, parameters and thresholds come from here: a damaged one is never used
        raise CorruptStoreError(f"manifest {str(f)!r}: checksum mismatch, the file is damaged or was edited "
                                f"(restore it from a backup: biomatch gallery restore)")
    try:
        return _checked_manifest(manifest, f)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise CorruptStoreError(f"manifest {str(f)!r}: malformed ({type(exc).__name__}: {exc})") from None

def _checked_manifest(manifest: dict, f: Path) -> dict:
    for key, kind in (("gallery_id", str), ("n_shards", int), ("match_params", str), ("decision_params", str)):
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise CorruptStoreError(f"manifest {str(f)!r}: expected {key} a {kind.__name__}, "
                                    f"got {manifest.get(key)!r}")
    want_version = FORMAT_VERSION if manifest.get("encryption") is None else ENCRYPTED_FORMAT_VERSION
    if manifest.get("version") != want_version:
        raise IncompatibleGalleryError(
            f"manifest {str(f)!r}: expected format version {want_version}, got {manifest.get('version')}")
    if manifest.get("encryption") is not None:
        check_section(manifest["encryption"])
    if not isinstance(manifest.get("generated_background", False), bool):
        raise CorruptStoreError(f"manifest {str(f)!r}: expected generated_background a bool, "
                                f"got {manifest.get('generated_background')!r}")
    if manifest.get("template_format") != TEMPLATE_FORMAT:
        raise IncompatibleGalleryError(f"manifest {str(f)!r}: expected template format {TEMPLATE_FORMAT}, "
                                       f"got {manifest.get('template_format')}")
    try:
        from_json(manifest["match_params"], MatchParams)
    except Exception as exc:
        raise IncompatibleGalleryError(f"manifest {str(f)!r}: unreadable match parameters ({exc})") from exc
    try:  # (no hash comparison: a field added to DecisionParams later must not lock old galleries out)
        decision_from_json(manifest["decision_params"])
    except Exception as exc:
        raise IncompatibleGalleryError(f"manifest {str(f)!r}: unreadable decision parameters ({exc})") from exc
    # The hash of the parameters as written: a gallery written before a field existed stores
    # fewer values (read with the value that reproduces its scores, biomatch.params.from_json).
    if stored_params_hash(manifest["match_params"], MatchParams) != manifest.get("match_params_hash"):
        raise IncompatibleGalleryError(f"manifest {str(f)!r}: match parameter hash does not match its parameters")
    shard_counts = [e.get("n_shards") for e in (manifest.get("routing") or {}).get("epochs", ())
              if isinstance(e, dict)] or [manifest.get("n_shards")]
    if not all(isinstance(n, int) and 1 <= n <= 1000 for n in shard_counts) or shard_counts != sorted(set(shard_counts)) \
            or shard_counts[-1] != manifest.get("n_shards"):
        raise IncompatibleGalleryError(f"manifest {str(f)!r}: routing epochs {shard_counts} do not end at "
                                       f"n_shards {manifest.get('n_shards')}")
    retrieval = manifest.get("retrieval") or {}
    kind = retrieval.get("kind")
    if kind not in registered():
        raise IncompatibleGalleryError(f"manifest {str(f)!r}: expected a retrieval component in "
                                       f"{registered()}, got {kind!r}")
    # The finger codes are derived data: a gallery built with another code generation opens, and
    # each shard's index files, stamped with their generation, are rebuilt from its store
    # (FaissRetrieval.load; minutes at a million subjects, once: a writer saves them).  A writer's
    # close records the generation in use (core.GalleryCore._write_counts).
    stamp = retrieval.get("code_generation")
    if not (stamp is None or isinstance(stamp, str)):
        raise CorruptStoreError(f"manifest {str(f)!r}: expected retrieval.code_generation a str or null, "
                                f"got {stamp!r}")
    if stamp != code_generation(kind):
        log.info("gallery %s: finger-code generation %s, this version's is %s: indexes are rebuilt from the stores",
                 f.parent, stamp, code_generation(kind))
    return manifest


def new_manifest(n_shards: int, match_params: MatchParams, decision: DecisionParams,
                 template_params_hash: str | None, retrieval: str, generated_background: bool = False,
                 key=None) -> dict:
    """The manifest of a new gallery (a fresh gallery id; one routing epoch).  ``generated_background``
    is written only when True (older galleries stay byte-identical in meaning).  With ``key`` (a
    KeyProvider) the gallery is encrypted: a fresh data key wrapped by it, format version 2."""
    extra = {"generated_background": True} if generated_background else {}
    gallery_id = uuid.uuid4().hex
    if key is not None:
        extra["encryption"] = new_section(key, gallery_id)
    return {**extra,
        "format": FORMAT, "version": FORMAT_VERSION if key is None else ENCRYPTED_FORMAT_VERSION,
        "gallery_id": gallery_id,
        "created_utc": time.time(), "n_shards": n_shards,
        "routing": {"epochs": [{"n_shards": n_shards, "since_utc": time.time()}]},
        "match_params": to_json(match_params), "match_params_hash": params_hash(match_params),
        "decision_params": to_json(decision), "decision_params_hash": params_hash(decision),
        "template_format": TEMPLATE_FORMAT, "template_params_hash": template_params_hash,
        "retrieval": {"kind": retrieval, "code_generation": code_generation(retrieval)},
        "counts": {"subjects": 0, "fingers": 0},
    }


def write_manifest(path: Path, manifest: dict) -> None:
    """Replace the gallery manifest atomically, with a checksum of its content (0600)."""
    doc = {k: v for k, v in manifest.items() if k != "checksum"}
    doc["checksum"] = canonical_checksum(doc)
    write_private_atomic(path / MANIFEST, json.dumps(doc, indent=1, sort_keys=True).encode())


def gallery_path(path, name: str = "path") -> Path:
    """``path`` as a Path, refusing what cannot name a folder (None, numbers, NUL bytes)."""
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise invalid(name, "a folder path (str or os.PathLike)", type(path).__name__)
    path = Path(path)
    if "\x00" in str(path) or not str(path):
        raise invalid(name, "a folder path without NUL bytes", str(path))
    return path


def _subject_hash(subject_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(subject_id.encode(), digest_size=8).digest(), "little")


def epochs(manifest: dict) -> list[int]:
    """Shard counts of the routing epochs, oldest first (the last routes new subjects)."""
    routing = manifest.get("routing") or {}
    return [int(e["n_shards"]) for e in routing.get("epochs", ())] or [int(manifest["n_shards"])]


def homes(manifest: dict, subject_id: str) -> list[int]:
    """Shard numbers where a subject may be enrolled: its hash modulo each epoch's shard count,
    newest epoch first (a subject never moves: it stays where its epoch put it)."""
    h = _subject_hash(subject_id)
    return list(dict.fromkeys(h % n for n in reversed(epochs(manifest))))


def undo_create(path: Path, made_folder: bool) -> None:
    """Remove what a failed create() wrote (the folder itself only if create() made it)."""
    if made_folder:
        shutil.rmtree(path, ignore_errors=True)
        return
    for child in list(path.iterdir()) if path.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


def discard_interrupted_creation(path: Path) -> None:
    """Empty a folder left by a create() that was killed before its manifest: nothing can have
    been enrolled there (enrolment needs the manifest), so nothing is lost."""
    log.warning("gallery %s: discarding a creation that was interrupted", path)
    undo_create(path, made_folder=False)


def discard_orphan_shard(folder: Path) -> None:
    """Delete a shard folder no routing epoch refers to (left by an add_shard killed before its
    manifest): no subject can have been routed there.  Refuses one that holds subjects."""
    try:
        store = Store(folder / Shard.STORE_NAME)
    except Exception:  # killed while creating the store: nothing in it
        store = None
    if store is not None:
        try:
            n = store.counts()["subjects"]
        except Exception:
            n = 0
        finally:
            store.close()
        if n:
            raise StorageError(f"shard folder {str(folder)!r}: not in the manifest but holds {n} subjects; "
                               f"refusing to replace it")
    log.warning("discarding %s: left by an interrupted add_shard", folder)
    shutil.rmtree(folder)
