"""The Celery backend: a broker carries job ids to scoring workers on other machines.

The catalog's job row stays the truth (state, attempts, lease, error); a message carries
only the job id, and is a worker's turn to run one due job: the one it names unless
another study's job waits longer by the fair order (:meth:`~gateway.catalog.JobStore
.claim_job`); the job passed over keeps the turn of the message of the job taken
instead. The job runs with the same :class:`~gateway.queue.runner.JobRunner` as the
in-process workers, so retries, backoff, dead jobs and leases behave identically. A
message when no job is due (a duplicate, a job still leased by a live worker, one
already done) is acknowledged and dropped.

Delivery guarantees:

* ``acks_late`` with a prefetch of one: a message is acknowledged only after its job ran,
  and a worker holds one job at a time; a worker killed mid-job has its message
  redelivered by the broker (RabbitMQ at once, Redis after its visibility timeout);
* durable queue, persistent messages (RabbitMQ keeps them across a broker restart);
* the :class:`~gateway.queue.sweeper.Sweeper` on the completion leader publishes every job
  that is due and has no live message: retries after their backoff, jobs whose worker
  died (after the lease expired), and jobs whose message a broker lost.

The worker side runs Celery's own worker (``celery worker``) behind ``ihgamp serve --role
worker`` with its thread pool: one process per worker node loads the model once, before
the first message, and ``worker.count`` threads share it (one per GPU is the usual
count). Keeping the tasks in the worker's own process also keeps its Prometheus metrics
in the process that serves them (``node.metrics_port``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from celery import Celery

from ..catalog import Catalog, JobStore
from ..config import Settings, WorkerSettings
from ..metrics import JOB_MESSAGES_SKIPPED, JOBS_PUBLISHED
from .base import JobQueue
from .runner import JobRunner

__all__ = ["TASK", "CeleryQueue", "make_celery", "publish", "run_worker"]

logger = logging.getLogger(__name__)

TASK = "ihgamp.score"


def make_celery(settings: Settings) -> Celery:
    """A Celery app for the gateway's broker (JSON messages only, never pickle)."""
    worker = settings.worker
    app = Celery("ihgamp", broker=worker.broker_connect_url(), set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_default_queue=worker.queue_name,
        task_default_delivery_mode="persistent",
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # Redis: an unacknowledged message comes back after this; the sweeper's
        # republication window is the longer of the two timeouts that matter.
        broker_transport_options={
            "visibility_timeout": int(max(worker.republish_after_s, worker.lease_s) + 60)
        },
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        worker_enable_remote_control=False,
    )
    app.task(name=TASK, bind=True)(_score_task)
    return app


def publish(app: Celery, jobs: JobStore, job_ids: list[int], by: str = "submit") -> None:
    """Send one message per job (only its id) and record the publication."""
    for job_id in job_ids:
        app.send_task(TASK, args=[job_id])
    jobs.mark_published(job_ids)
    JOBS_PUBLISHED.labels(by).inc(len(job_ids))


class CeleryQueue(JobQueue):
    """Queueing side of the Celery backend (receivers, the API, the command line).

    Parameters
    ----------
    jobs : JobStore
        The catalog's job rows.
    app : Celery
        From :func:`make_celery`.
    settings : WorkerSettings
        Attempts per job.
    """

    def __init__(self, jobs: JobStore, app: Celery, settings: WorkerSettings) -> None:
        self.jobs = jobs
        self.app = app
        self.settings = settings

    def submit(self, study_uid: str, reason: str) -> None:
        """Write the job rows (durable, one per analysis request), then publish their ids.

        A publication that fails (broker down) is logged; the sweeper publishes the jobs
        once the broker is back, so the study is never lost.
        """
        job_ids = self.jobs.enqueue_all(study_uid, self.settings.max_attempts, reason)
        try:
            publish(self.app, self.jobs, job_ids)
        except Exception as exc:  # noqa: BLE001 - kombu raises many types; the row is safe
            logger.warning(
                "broker unavailable; the sweeper will publish the jobs",
                extra={"job_ids": job_ids, "study_uid": study_uid, "error": type(exc).__name__},
            )
        logger.info("study queued", extra={"study_uid": study_uid, "job_ids": job_ids})

    def start(self) -> None:
        """Nothing to start: the consumers are ``ihgamp serve --role worker`` processes."""

    def stop(self, timeout_s: float | None = None) -> None:
        """Nothing to stop."""


# -- the worker side ------------------------------------------------------------------------


@dataclass
class _Runtime:
    catalog: Catalog
    jobs: JobStore
    runner: JobRunner
    owner: str
    lease_s: float


_runtime: _Runtime | None = None


def _build_runtime(settings: Settings) -> _Runtime:
    from ..parts import build_worker_runtime

    catalog, jobs, runner, owner = build_worker_runtime(settings)
    return _Runtime(catalog, jobs, runner, owner, settings.worker.lease_s)


def _score_task(task: Any, job_id: int) -> str:
    """Run the job named by a message (skip it when it is not due)."""
    if _runtime is None:
        raise RuntimeError("the worker runtime is not loaded (run_worker loads it first)")
    job = _runtime.jobs.claim_job(int(job_id), _runtime.owner, _runtime.lease_s)
    redelivered = bool((task.request.delivery_info or {}).get("redelivered"))
    if job is None:
        JOB_MESSAGES_SKIPPED.labels(str(redelivered).lower()).inc()
        logger.info(
            "message for a job that is not due; dropped",
            extra={"job_id": job_id, "redelivered": redelivered},
        )
        return "skipped"
    return _runtime.runner.run(job, _runtime.owner).outcome


def run_worker(settings: Settings, loglevel: str = "INFO") -> None:
    """Load the model, then run Celery's worker in this process until SIGTERM.

    On SIGTERM the worker stops taking messages and finishes the jobs it runs.
    """
    global _runtime
    _runtime = _build_runtime(settings)
    app = make_celery(settings)
    app.worker_main(
        [
            "--quiet",
            "worker",
            "--loglevel",
            loglevel,
            "--pool",
            "threads",
            "--concurrency",
            str(settings.worker.count),
            "--hostname",
            f"{settings.node_name()}@{os.uname().nodename}",
            "--queues",
            settings.worker.queue_name,
            "--without-gossip",
            "--without-mingle",
            "-O",
            "fair",
        ]
    )
