"""The job queue interface: what completion, the CLI and the API submit work to.

The in-process backend (:mod:`.inprocess`) runs worker threads against the catalog's
``jobs`` table. A distributed backend (Celery workers on GPU nodes) implements the same
three methods, so receive, completion and scoring code do not change with it.
"""

from __future__ import annotations

import abc

from ..catalog import JobStore

__all__ = ["CatalogSubmitter", "JobQueue"]


class JobQueue(abc.ABC):
    """Durable queue of scoring jobs."""

    @abc.abstractmethod
    def submit(self, study_uid: str, reason: str) -> None:
        """Queue a study for scoring (durable before returning).

        Raises
        ------
        CatalogError
            If the study cannot be queued from its current state.
        """

    @abc.abstractmethod
    def start(self) -> None:
        """Start consuming jobs."""

    @abc.abstractmethod
    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop consuming; let a running job finish for up to ``timeout_s``."""


class CatalogSubmitter:
    """Queue studies by writing job rows only (for commands that run beside a gateway).

    The gateway's workers pick the rows up; nothing runs in the calling process.

    Parameters
    ----------
    jobs : JobStore
        The catalog's job rows.
    max_attempts : int
        Attempts per job.
    """

    def __init__(self, jobs: JobStore, max_attempts: int) -> None:
        self.jobs = jobs
        self.max_attempts = max_attempts

    def submit(self, study_uid: str, reason: str) -> None:
        """Queue ``study_uid``."""
        self.jobs.enqueue(study_uid, self.max_attempts, reason)
