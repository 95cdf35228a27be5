"""The job queue interface: what completion, the CLI and the API submit work to.

The in-process backend (:mod:`.inprocess`) runs worker threads against the catalog's
``jobs`` table; the Celery backend (:mod:`.celery_queue`) publishes job ids to a broker
that Celery workers on GPU nodes consume. Both implement these three methods, so
receive, completion and the life cycle do not change with the backend.
"""

from __future__ import annotations

import abc

__all__ = ["JobQueue"]


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
    def stop(self, timeout_s: float | None = None) -> None:
        """Stop consuming; let a running job finish for up to ``timeout_s``."""

    def busy(self) -> bool:
        """Whether a job handed back at :meth:`stop` is still running in this process."""
        return False
