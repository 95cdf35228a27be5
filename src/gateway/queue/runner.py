"""Running one claimed job, the same way in every backend.

While the processor runs, a heartbeat renews the job's lease every third of its length;
a processor that raises fails the attempt (:class:`PermanentJobError`: no retry), and the
job store schedules the retry with exponential backoff or fails the job and its study
after ``max_attempts``. A worker process that dies stops renewing; once the lease has
expired another worker takes the job over (the in-process workers find it by polling,
Celery workers through the sweeper's re-publication).

A catalog outage (the database restarting, a dropped connection) ends neither the
heartbeat nor the attempt's record: each logs one line per failed try, backs off and
tries again, the heartbeat until the job ends or its lease is found taken, the outcome
for up to one lease length (after that the lease has expired and the job is another
worker's to take over).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..catalog import ClaimedJob, JobStore, catalog_unavailable
from ..catalog.schema import AttemptOutcome
from ..config import WorkerSettings
from ..errors import PermanentJobError
from ..loops import doubling
from ..metrics import JOB_LEASE_TAKEOVERS, JOB_QUEUE_SECONDS, JOBS, SCORING_SECONDS

__all__ = ["JobOutcome", "JobProcessor", "JobRunner"]

logger = logging.getLogger(__name__)

JobProcessor = Callable[[ClaimedJob], None]
T = TypeVar("T")

#: First and longest wait between tries while the catalog is unreachable (seconds).
OUTAGE_BACKOFF_S = (0.5, 10.0)


@dataclass(frozen=True)
class JobOutcome:
    """How one attempt ended: ``done``, ``retry`` (after ``delay_s``), ``failed``, ``lost``."""

    outcome: AttemptOutcome
    delay_s: float = 0.0
    seconds: float = 0.0


class JobRunner:
    """Runs claimed jobs with a lease heartbeat and records their outcome.

    Parameters
    ----------
    jobs : JobStore
        The catalog's job rows.
    processor : callable
        Runs one job.
    settings : WorkerSettings
        Lease length and backoff.
    on_outcome : callable, optional
        Called with the job and its outcome (metrics).
    """

    def __init__(
        self,
        jobs: JobStore,
        processor: JobProcessor,
        settings: WorkerSettings,
        on_outcome: Callable[[ClaimedJob, JobOutcome], None] | None = None,
    ) -> None:
        self.jobs = jobs
        self.processor = processor
        self.settings = settings
        self.on_outcome = on_outcome
        self._running: dict[int, str] = {}
        self._lock = threading.Lock()

    def release_running(self) -> int:
        """Hand back the jobs still running here (a clean shutdown that cannot wait for them).

        Each goes back to ``queued`` at once, its attempt not counted and its lease
        dropped, so another worker takes it now instead of after the lease expires; a
        processor that finishes later finds its lease gone (``lost``). Returns how many.
        """
        with self._lock:
            running = dict(self._running)
        released = 0
        for job_id, owner in running.items():
            try:
                released += self.jobs.release(job_id, owner)
            except Exception:  # the catalog is gone: the lease expires as after a crash
                logger.exception("cannot hand a running job back", extra={"job_id": job_id})
        if released:
            logger.warning("running jobs handed back at shutdown", extra={"jobs": released})
        return released

    def run(self, job: ClaimedJob, owner: str) -> JobOutcome:
        """Run ``job`` held by ``owner``; return how it ended."""
        with self._lock:
            self._running[job.job_id] = owner
        try:
            return self._run(job, owner)
        finally:
            with self._lock:
                self._running.pop(job.job_id, None)

    def _run(self, job: ClaimedJob, owner: str) -> JobOutcome:
        done = threading.Event()
        interval = self.settings.lease_s / 3.0

        def heartbeat() -> None:
            failures, wait = 0, interval
            while not done.wait(wait):
                try:
                    held = self.jobs.renew(job.job_id, owner, self.settings.lease_s)
                except Exception as exc:  # noqa: BLE001 - the heartbeat must outlive any error
                    failures += 1
                    wait = min(interval, doubling(failures, *OUTAGE_BACKOFF_S))
                    _log_failed_try("lease renewal", job.job_id, exc, wait)
                    continue
                if not held:
                    logger.warning("lease lost", extra={"job_id": job.job_id})
                    return
                if failures:
                    logger.info("lease renewed after an outage", extra={"job_id": job.job_id})
                failures, wait = 0, interval

        beat = threading.Thread(target=heartbeat, name=f"lease-{job.job_id}", daemon=True)
        beat.start()
        JOB_QUEUE_SECONDS.labels(job.analysis).observe(job.queued_s)
        if job.took_over:
            JOB_LEASE_TAKEOVERS.inc()
        logger.info(
            "job started",
            extra={
                "job_id": job.job_id,
                "study_uid": job.study_uid,
                "attempt": job.attempt,
                "owner": owner,
            },
        )
        started = time.perf_counter()
        try:
            self.processor(job)
        except Exception as exc:
            done.set()
            permanent = isinstance(exc, PermanentJobError)
            message = str(exc) if permanent else f"{type(exc).__name__}: {exc}"
            kind, delay = self._through_outage(
                lambda: self.jobs.fail(
                    job.job_id,
                    owner,
                    message,
                    self.settings.backoff_s,
                    self.settings.backoff_max_s,
                    permanent=permanent,
                ),
                "job failure record",
                job.job_id,
            )
            logger.log(
                logging.ERROR if kind is AttemptOutcome.FAILED else logging.WARNING,
                "job failed",
                exc_info=not permanent,
                extra={
                    "job_id": job.job_id,
                    "study_uid": job.study_uid,
                    "outcome": kind,
                    "error": message,
                },
            )
            outcome = JobOutcome(kind, delay, time.perf_counter() - started)
        else:
            done.set()
            finished = self._through_outage(
                lambda: self.jobs.finish(job.job_id, owner), "job completion record", job.job_id
            )
            kind = AttemptOutcome.DONE if finished else AttemptOutcome.LOST
            outcome = JobOutcome(kind, 0.0, time.perf_counter() - started)
            logger.info(
                "job done" if finished else "job finished after its lease was lost",
                extra={"job_id": job.job_id, "study_uid": job.study_uid},
            )
        finally:
            done.set()
            beat.join(timeout=5)
        JOBS.labels(outcome.outcome, job.analysis).inc()
        if outcome.outcome is AttemptOutcome.DONE:
            SCORING_SECONDS.labels(job.analysis).observe(outcome.seconds)
        if self.on_outcome is not None:
            self.on_outcome(job, outcome)
        return outcome

    def _through_outage(self, call: Callable[[], T], what: str, job_id: int) -> T:
        """``call()``, tried again while the catalog is unreachable, for one lease length."""
        deadline = time.monotonic() + self.settings.lease_s
        failures = 0
        while True:
            try:
                return call()
            except Exception as exc:
                failures += 1
                wait = doubling(failures, *OUTAGE_BACKOFF_S)
                if not catalog_unavailable(exc) or time.monotonic() + wait > deadline:
                    raise
                _log_failed_try(what, job_id, exc, wait)
                time.sleep(wait)


def _log_failed_try(what: str, job_id: int, exc: BaseException, wait: float) -> None:
    """One line per failed try (the error's type only: no statement, no parameters)."""
    logger.warning(
        f"{what} failed; trying again",
        extra={"job_id": job_id, "error": type(exc).__name__, "retry_in_s": round(wait, 1)},
    )
