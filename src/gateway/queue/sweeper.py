"""The sweeper: publishes every due job that no live broker message announces.

Runs on the completion leader (one node of the cluster at a time) with the Celery
backend. Each pass asks the catalog for due jobs without a current message
(:meth:`~gateway.catalog.JobStore.unpublished`) and publishes them: retries whose backoff
has passed, jobs whose worker died (once the lease expired), and jobs whose message a
broker restarted without persistence lost. A duplicate message is harmless: a worker
claims a job by id only when it is due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..catalog import JobStore
from ..catalog.leases import NamedLease
from ..config import WorkerSettings
from ..loops import PollingLoop

__all__ = ["Sweeper"]

logger = logging.getLogger(__name__)


class Sweeper:
    """Periodic re-publication of due jobs.

    Parameters
    ----------
    jobs : JobStore
        The catalog's job rows.
    publish : callable
        Sends messages for a list of job ids (and records the publication).
    settings : WorkerSettings
        ``sweep_interval_s`` and ``republish_after_s``.
    leader : NamedLease, optional
        Acts only while this lease is held (shared with the completion monitor).
    on_published : callable, optional
        Called with the number of jobs published (metrics).
    """

    def __init__(
        self,
        jobs: JobStore,
        publish: Callable[[list[int]], None],
        settings: WorkerSettings,
        leader: NamedLease | None = None,
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        self.jobs = jobs
        self.publish = publish
        self.settings = settings
        self.leader = leader
        self.on_published = on_published
        self._loop = PollingLoop("sweeper", self._step, settings.sweep_interval_s)

    def sweep(self) -> list[int]:
        """One pass; return the job ids published."""
        due = self.jobs.unpublished(self.settings.republish_after_s)
        if due:
            self.publish(due)
            logger.info("due jobs published", extra={"job_ids": due[:20], "count": len(due)})
            if self.on_published is not None:
                self.on_published(len(due))
        return due

    def _step(self) -> bool:
        if self.leader is not None and not self.leader.held:
            return False
        try:
            self.sweep()
        except Exception as exc:  # noqa: BLE001 - broker down: try again next interval
            logger.warning("sweep failed; retrying", extra={"error": type(exc).__name__})
        return False

    def start(self) -> None:
        """Sweep every ``sweep_interval_s`` in a daemon thread."""
        self._loop.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._loop.stop(10)
