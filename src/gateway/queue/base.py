"""The job queue interface: what completion, the CLI and the API submit work to.

The in-process backend (:mod:`.inprocess`) runs worker threads against the catalog's
``jobs`` table. A distributed backend (Celery workers on GPU nodes) implements the same
three methods, so receive, completion and scoring code do not change with it.
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
    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop consuming; let a running job finish for up to ``timeout_s``."""
