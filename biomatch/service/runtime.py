"""The service's parts over one gallery: keys, audit log, idempotency, review queue, metrics.

:class:`Service` is what the routes of :mod:`.app` work with.  The gallery behind it is any
object with :class:`~biomatch.dedup.Gallery`'s calls (``enroll``, ``deduplicate``,
``identify``, ``verify``, ``remove``, ``subject_info``, ``stats``, ``__contains__``): the
embedded gallery, or a :class:`~biomatch.dedup.cluster.DistributedGallery` on a Ray cluster.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio

from .audit import AUDIT_FILE, AuditLog
from .auth import KeyStore, service_dir
from .idempotency import IdempotencyStore
from .images import IMAGES_FILE, ImageStore
from .metrics import ServiceMetrics
from .params import ServiceParams
from .review import ReviewQueue

__all__ = ["Service"]

log = logging.getLogger(__name__)


class Service:
    """Everything a request needs, opened once per process.

    Parameters
    ----------
    gallery : Gallery or DistributedGallery
        Open, writable.  Closed by :meth:`close` when ``owns_gallery``.
    params : ServiceParams
    owns_gallery : bool

    Notes
    -----
    Thread-safe: the gallery and each store lock themselves.  Gallery operations run in worker
    threads, at most ``params.max_concurrent_searches`` at once (:meth:`run`).
    """

    def __init__(self, gallery, params: ServiceParams = ServiceParams(), owns_gallery: bool = False, cipher=None):
        self.gallery = gallery
        self.params = params
        self.owns_gallery = owns_gallery
        self.folder = service_dir(Path(gallery.path))
        self.keys = KeyStore(self.folder)
        self.audit = AuditLog(self.folder / AUDIT_FILE)
        if self.audit.recovered:
            log.warning("audit log: a torn last line (%d bytes) was moved to %s and the recovery recorded",
                        self.audit.recovered["bytes"], self.audit.recovered["moved_to"])
        # The recorded idempotent answers, the kept probes of REVIEW cases (and kept images) are
        # sealed like the gallery's records when it is encrypted.
        cipher = cipher if cipher is not None else getattr(gallery, "_keyring", None)
        self.idempotency = IdempotencyStore(self.folder / "idempotency.sqlite", cipher)
        self.reviews = ReviewQueue(self.folder / "reviews.sqlite", cipher)
        if params.keep_images and cipher is None and not params.keep_images_in_clear:
            from ..errors import invalid

            raise invalid("keep_images", "an encrypted gallery (biometric images must not be stored in clear; "
                          "keep_images_in_clear=True / --keep-images-in-clear to store them anyway)",
                          "an unencrypted gallery")
        # Opened when images are kept, or were: they are shown and deleted with their subject.
        self.images = (ImageStore(self.folder / IMAGES_FILE, cipher)
                       if params.keep_images or (self.folder / IMAGES_FILE).exists() else None)
        if self.images is not None:  # subjects removed while the service was down keep no images
            n = self.images.purge_absent(self.enrolled)
            if n:
                log.info("deleted %d kept images of subjects removed outside the service", n)
        self.metrics = ServiceMetrics()
        self._slots = None

    @classmethod
    def open(cls, gallery_path, params: ServiceParams = ServiceParams(), cluster_address: str | None = None,
             n_threads: int = 1, cache_bytes: int | None = None, key_file: str | None = None) -> "Service":
        """Open the gallery at ``gallery_path`` (on a Ray cluster when ``cluster_address``) and its service.

        ``cache_bytes`` bounds each shard's cache of prepared templates (the gallery's default: 512 MiB).
        ``key_file``: an encrypted gallery's key file (else the library reads ``BIOMATCH_GALLERY_KEY``);
        only its path travels (to worker processes, to Ray actors), never the key.
        """
        from ..dedup import manifest as gallery_manifest
        from ..dedup.core import open_keyring
        from ..dedup.encryption import KeyFile

        key = None if key_file is None else KeyFile(key_file)
        # the service's own key ring (the review queue's kept probes), also for a cluster gallery,
        # whose key ring lives in its actors
        cipher = open_keyring(Path(gallery_path), gallery_manifest.read_manifest(Path(gallery_path)), key)
        if cluster_address:
            from ..dedup.cluster import DistributedGallery

            gallery = DistributedGallery.open(gallery_path, address=cluster_address, cache_bytes=cache_bytes, key=key)
        else:
            from ..dedup import Gallery

            gallery = Gallery.open(gallery_path, n_threads=n_threads, cache_bytes=cache_bytes, key=key)
        try:
            return cls(gallery, params, owns_gallery=True, cipher=cipher)
        except BaseException:
            gallery.close()
            raise

    def enrolled(self, subject_id: str) -> bool:
        """Whether ``subject_id`` is enrolled in the gallery (a store read)."""
        from ..dedup.errors import UnknownSubjectError

        try:
            self.gallery.subject_info(subject_id)
        except UnknownSubjectError:
            return False
        return True

    async def run(self, fn, *args):
        """``fn(*args)`` in a worker thread, once a gallery slot is free (the wait is the queue depth)."""
        if self._slots is None:
            self._slots = anyio.CapacityLimiter(self.params.max_concurrent_searches)
        q = self.metrics.queue_depth
        q.inc()
        try:
            await self._slots.acquire()
        finally:
            q.dec()
        try:
            return await anyio.to_thread.run_sync(fn, *args)
        finally:
            self._slots.release()

    @staticmethod
    async def io(fn, *args):
        """``fn(*args)`` (a small blocking write or read) in a worker thread, without a gallery slot."""
        return await anyio.to_thread.run_sync(fn, *args)

    def close(self) -> None:
        for part in (self.idempotency, self.reviews, self.images, self.audit):
            if part is None:
                continue
            try:
                part.close()
            except Exception:  # closing is best effort: each part's writes were durable already
                log.exception("closing %r", part)
        if self.owns_gallery:
            self.gallery.close()
