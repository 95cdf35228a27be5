"""The embedded queue backend: worker threads claiming jobs from the catalog.

Each worker claims a job with a lease, renews the lease every third of its length while
the job runs, and on failure either schedules a retry with exponential backoff or, after
``max_attempts``, fails the job and its study. A worker that dies (process killed) stops
renewing; when its lease expires another worker takes the job over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

from ..catalog import ClaimedJob, JobStore
from ..config import WorkerSettings
from .base import JobQueue

__all__ = ["InProcessQueue", "JobProcessor", "PermanentJobError"]

logger = logging.getLogger(__name__)

JobProcessor = Callable[[ClaimedJob], None]


class PermanentJobError(Exception):
    """Raised by a processor when retrying cannot help (bad data, bad model file)."""


class InProcessQueue(JobQueue):
    """Worker threads in this process.

    Parameters
    ----------
    jobs : JobStore
        The catalog's job rows.
    processor : callable
        Runs one job; raises to fail it (:class:`PermanentJobError`: no retry).
    settings : WorkerSettings
        Worker count, lease, attempts, backoff, poll interval.
    """

    def __init__(self, jobs: JobStore, processor: JobProcessor, settings: WorkerSettings) -> None:
        self.jobs = jobs
        self.processor = processor
        self.settings = settings
        self.owner_prefix = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

    def submit(self, study_uid: str, reason: str) -> None:
        """Queue a study (a durable job row) and wake a worker."""
        job_id = self.jobs.enqueue(study_uid, self.settings.max_attempts, reason)
        logger.info("study queued", extra={"study_uid": study_uid, "job_id": job_id})
        self._wake.set()

    def start(self) -> None:
        """Start ``settings.count`` worker threads."""
        self._stop.clear()
        for index in range(self.settings.count):
            thread = threading.Thread(
                target=self._loop,
                args=(f"{self.owner_prefix}:{index}",),
                name=f"worker-{index}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop claiming; wait up to ``timeout_s`` for running jobs."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self._threads = []

    def run_once(self, owner: str | None = None) -> bool:
        """Claim and run one due job in the calling thread; False if none was due."""
        owner = owner or f"{self.owner_prefix}:inline"
        job = self.jobs.claim(owner, self.settings.lease_s)
        if job is None:
            return False
        self._run(job, owner)
        return True

    def _loop(self, owner: str) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_once(owner)
            except Exception:
                logger.exception("worker loop error; continuing")
                worked = False
            if not worked:
                self._wake.wait(self.settings.poll_interval_s)
                self._wake.clear()

    def _run(self, job: ClaimedJob, owner: str) -> None:
        done = threading.Event()
        interval = self.settings.lease_s / 3.0

        def heartbeat() -> None:
            while not done.wait(interval):
                if not self.jobs.renew(job.job_id, owner, self.settings.lease_s):
                    logger.warning("lease lost", extra={"job_id": job.job_id})
                    return

        beat = threading.Thread(target=heartbeat, name=f"lease-{job.job_id}", daemon=True)
        beat.start()
        logger.info(
            "job started",
            extra={"job_id": job.job_id, "study_uid": job.study_uid, "attempt": job.attempt},
        )
        try:
            self.processor(job)
        except Exception as exc:
            done.set()
            permanent = isinstance(exc, PermanentJobError)
            message = f"{type(exc).__name__}: {exc}" if not permanent else str(exc)
            outcome = self.jobs.fail(
                job.job_id,
                owner,
                message,
                self.settings.backoff_s,
                self.settings.backoff_max_s,
                permanent=permanent,
            )
            logger.log(
                logging.ERROR if outcome == "failed" else logging.WARNING,
                "job failed",
                exc_info=not permanent,
                extra={
                    "job_id": job.job_id,
                    "study_uid": job.study_uid,
                    "outcome": outcome,
                    "error": message,
                },
            )
            return
        finally:
            done.set()
            beat.join(timeout=5)
        self.jobs.finish(job.job_id, owner)
        logger.info("job done", extra={"job_id": job.job_id, "study_uid": job.study_uid})
