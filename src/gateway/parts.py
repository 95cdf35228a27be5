"""The one place that builds the gateway's parts from settings.

``ihgamp serve`` (every role), the command line, the demo and the tests all get their
catalog, queue, life cycle and services from here, so they are wired the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .catalog import Catalog, JobStore
from .catalog.leases import LEADER_LEASE, NamedLease
from .config import QueueBackend, Settings
from .lifecycle import StudyLifecycle
from .queue.base import JobQueue
from .queue.inprocess import InProcessQueue, worker_owner
from .queue.runner import JobProcessor, JobRunner
from .routing import StudyRouter

if TYPE_CHECKING:  # the [model] engine imports torch's neighbours: only its users load it
    from .analyses.engine import Engine

__all__ = ["Core", "build_core", "build_worker_runtime", "make_processor", "open_catalog"]


def open_catalog(settings: Settings) -> Catalog:
    """Open the catalog the settings name, with the password of ``catalog.password_file``.

    Every command and role opens it here, never from ``catalog.url`` alone.
    """
    return Catalog(settings.catalog.connect_url())


@dataclass
class Core:
    """What every role shares: catalog, job rows, queue, life cycle, leader lease."""

    settings: Settings
    catalog: Catalog
    jobs: JobStore
    queue: JobQueue
    lifecycle: StudyLifecycle
    leader: NamedLease
    owner: str

    def enable_scoring(
        self, engine: Engine | None = None, on_reported: Callable[[str], None] | None = None
    ) -> Engine:
        """Load the model and give the in-process workers their processor."""
        processor, engine = make_processor(self.settings, self.catalog, engine, on_reported)
        if isinstance(self.queue, InProcessQueue):
            self.queue.runner.processor = processor
        return engine

    def close(self) -> None:
        """Release database connections."""
        self.catalog.close()


def build_core(settings: Settings) -> Core:
    """Open the catalog and build the queue backend, the life cycle and the leader lease.

    The queue only queues until :meth:`Core.enable_scoring` gives in-process workers
    their processor (roles ``all`` and ``worker``).
    """
    catalog = open_catalog(settings)
    jobs = JobStore(catalog)
    owner = worker_owner(settings.node_name())
    queue: JobQueue
    if settings.worker.backend == QueueBackend.CELERY:
        from .queue.celery_queue import CeleryQueue, make_celery

        queue = CeleryQueue(jobs, make_celery(settings), settings.worker)
    else:
        runner = JobRunner(jobs, _no_processor, settings.worker)
        queue = InProcessQueue(jobs, runner, settings.worker, settings.node_name())
    from .analyses.engine import target_max_mpp

    router = StudyRouter(catalog, settings.analyses)
    lifecycle = StudyLifecycle(catalog, queue, target_max_mpp(settings.model.head), router)
    leader = NamedLease(catalog, LEADER_LEASE, owner, settings.completion.leader_lease_s)
    return Core(settings, catalog, jobs, queue, lifecycle, leader, owner)


def make_processor(
    settings: Settings,
    catalog: Catalog,
    engine: Engine | None = None,
    on_reported: Callable[[str], None] | None = None,
) -> tuple[JobProcessor, Engine]:
    """Load the model (once) and build the scoring job processor."""
    from .analyses.engine import load_engine, scoring_options
    from .outbox import Outbox
    from .report.writer import ReportWriter
    from .score.worker import AnalysisModels, ScoreProcessor

    m = settings.model
    engine = engine or load_engine(m.head, m.backbone_checkpoint, m.device, m.precision)
    reports = ReportWriter(catalog, Outbox(settings.storage.outbox_dir), settings)
    analyses = AnalysisModels(settings.analyses, m.device, engine, scoring_options(m))
    processor = ScoreProcessor(catalog, reports, analyses, on_reported=on_reported)
    return processor, engine


def build_worker_runtime(settings: Settings) -> tuple[Catalog, JobStore, JobRunner, str]:
    """What a Celery pool process needs: catalog, job rows, a runner with the model."""
    catalog = open_catalog(settings)
    jobs = JobStore(catalog)
    processor, _ = make_processor(settings, catalog)
    runner = JobRunner(jobs, processor, settings.worker)
    return catalog, jobs, runner, worker_owner(settings.node_name())


def _no_processor(job: object) -> None:
    raise RuntimeError("this process runs no scoring workers (worker.count = 0)")
