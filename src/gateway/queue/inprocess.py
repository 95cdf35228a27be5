"""The embedded queue backend: worker threads claiming job rows from the catalog.

No broker: ``worker.count`` threads poll the ``jobs`` table (woken at once when this
process queues a job). On PostgreSQL several processes can run workers against one
catalog the same way; Celery (:mod:`.celery_queue`) adds a broker so that GPU nodes are
told about work instead of polling for it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from ..catalog import JobStore
from ..config import WorkerSettings
from ..loops import PollingLoop
from .base import JobQueue
from .runner import JobProcessor, JobRunner

__all__ = ["InProcessQueue", "JobProcessor", "worker_owner"]

logger = logging.getLogger(__name__)


def worker_owner(node: str) -> str:
    """A lease owner name: node, process, and a token unique to this process."""
    return f"{node or socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class InProcessQueue(JobQueue):
    """Worker threads in this process.

    Parameters
    ----------
    jobs : JobStore
        The catalog's job rows.
    runner : JobRunner
        Runs a claimed job (heartbeat, outcome).
    settings : WorkerSettings
        Worker count, lease, attempts, poll interval.
    node : str
        This node's name (in lease owners, shown by ``ihgamp status``).
    """

    def __init__(
        self, jobs: JobStore, runner: JobRunner, settings: WorkerSettings, node: str = ""
    ) -> None:
        self.jobs = jobs
        self.runner = runner
        self.settings = settings
        self.owner_prefix = worker_owner(node)
        self._loops = [
            PollingLoop(f"worker-{index}", self._worker(index), settings.poll_interval_s)
            for index in range(settings.count)
        ]

    def _worker(self, index: int) -> Callable[[], bool]:
        owner = f"{self.owner_prefix}:{index}"
        return lambda: self.run_once(owner)

    def submit(self, study_uid: str, reason: str) -> None:
        """Queue a study (durable job rows, one per analysis request) and wake the workers."""
        job_ids = self.jobs.enqueue_all(study_uid, self.settings.max_attempts, reason)
        logger.info("study queued", extra={"study_uid": study_uid, "job_ids": job_ids})
        for loop in self._loops:
            loop.wake()

    def start(self) -> None:
        """Start ``settings.count`` worker threads."""
        for loop in self._loops:
            loop.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop claiming; wait up to ``worker.stop_timeout_s`` for running jobs.

        Jobs still running then are handed back (queued again, the attempt not counted),
        so a clean shutdown neither holds a lease until it expires nor costs an attempt.
        """
        timeout = self.settings.stop_timeout_s if timeout_s is None else timeout_s
        for loop in self._loops:  # all stop claiming at once, then share one deadline
            loop.signal_stop()
        deadline = time.monotonic() + timeout
        for loop in self._loops:
            loop.join(deadline - time.monotonic())
        self.runner.release_running()

    def busy(self) -> bool:
        """Whether a worker thread still runs (a job handed back at :meth:`stop`)."""
        return any(loop.running for loop in self._loops)

    def run_once(self, owner: str | None = None) -> bool:
        """Claim and run one due job in the calling thread; False if none was due."""
        owner = owner or f"{self.owner_prefix}:inline"
        job = self.jobs.claim(owner, self.settings.lease_s)
        if job is None:
            return False
        self.runner.run(job, owner)
        return True
