"""Prometheus metrics of one gateway process: counters where events happen, gauges at scrape.

Counters and histograms count what *this process* did (each node of a cluster has its
own; Prometheus sums them across nodes): instances received and refused, association
refusals by reason, jobs run and their outcome, lease take-overs, broker messages for jobs
that were not due, publications by the sweeper, dispatch attempts. Gauges are read from
the shared catalog when scraped: studies, jobs and deliveries by state, queue depth and
the age of the oldest queued job, dead-letter deliveries, and the spool's free space.

Every process exposes them: the ``api`` and ``all`` roles at ``/metrics``, other roles
on ``node.metrics_port`` (:mod:`gateway.probes`, with ``/health`` and ``/ready``).

A labelled counter has no series until its first event, so an alert such as
``increase(ihgamp_jobs_total{outcome="failed"}[1h]) > 0`` would miss the first failure
(there is no earlier sample to compare with). :func:`initialise` creates, at start, every
label set the code can produce with the configured analyses and destinations, at 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, select

__all__ = [
    "ASSOCIATIONS",
    "ASSOCIATION_REFUSALS",
    "DISPATCH_ATTEMPTS",
    "INSTANCES_RECEIVED",
    "INSTANCES_REFUSED",
    "JOBS",
    "JOBS_PUBLISHED",
    "JOB_LEASE_TAKEOVERS",
    "JOB_MESSAGES_SKIPPED",
    "JOB_QUEUE_SECONDS",
    "PULLS",
    "REGISTRY",
    "RefusalReason",
    "SCORING_SECONDS",
    "STUDY_CONFLICTS",
    "initialise",
    "observe",
    "render",
]

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry()


class RefusalReason(StrEnum):
    """Why a connection or association was refused (a label value)."""

    CALLING_AE = "calling-ae"
    HOST = "host"
    CALLED_AE = "called-ae"
    LIMIT = "limit"
    QUOTA = "unassociated-quota"
    TIMEOUT = "request-timeout"
    TLS = "tls"
    CERTIFICATE = "certificate"
    PDU = "oversized-pdu"
    MALFORMED = "malformed"
    STACK = "negotiation"


INSTANCES_RECEIVED = Counter(
    "ihgamp_instances_received", "Instances stored (acknowledged with 0x0000)", registry=REGISTRY
)
INSTANCES_REFUSED = Counter(
    "ihgamp_instances_refused", "C-STORE requests refused, by status", ["status"], registry=REGISTRY
)
STUDY_CONFLICTS = Counter(
    "ihgamp_study_conflicts",
    "Instances refused because they may not join their study: another patient's "
    "(rule=patient), another sender's after scoring (rule=sender)",
    ["rule"],
    registry=REGISTRY,
)
ASSOCIATIONS = Counter(
    "ihgamp_associations", "Associations accepted by this node", registry=REGISTRY
)
ASSOCIATION_REFUSALS = Counter(
    "ihgamp_association_refusals",
    "Connections and association requests refused, by reason",
    ["reason"],
    registry=REGISTRY,
)
SCORING_SECONDS = Histogram(
    "ihgamp_scoring_seconds",
    "Time to run one job (one analysis request of a study), by analysis",
    ["analysis"],
    registry=REGISTRY,
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800),
)
JOB_QUEUE_SECONDS = Histogram(
    "ihgamp_job_queue_seconds",
    "Time from a job being queued to a worker starting it, by analysis",
    ["analysis"],
    registry=REGISTRY,
    buckets=(0.1, 0.5, 1, 2, 5, 15, 60, 300, 1800, 7200),
)
JOBS = Counter(
    "ihgamp_jobs",
    "Job attempts run here, by outcome and analysis",
    ["outcome", "analysis"],
    registry=REGISTRY,
)
JOB_LEASE_TAKEOVERS = Counter(
    "ihgamp_job_lease_takeovers",
    "Jobs taken over after their previous worker's lease expired",
    registry=REGISTRY,
)
JOB_MESSAGES_SKIPPED = Counter(
    "ihgamp_job_messages_skipped",
    "Broker messages for jobs that were not due (duplicates, redeliveries)",
    ["redelivered"],
    registry=REGISTRY,
)
JOBS_PUBLISHED = Counter(
    "ihgamp_jobs_published",
    "Job messages sent to the broker, by who sent them",
    ["by"],
    registry=REGISTRY,
)
DISPATCH_ATTEMPTS = Counter(
    "ihgamp_dispatch_attempts",
    "Delivery attempts, by destination and outcome",
    ["destination", "outcome"],
    registry=REGISTRY,
)
PULLS = Counter(
    "ihgamp_pulls", "Study retrieves from a PACS, by outcome", ["outcome"], registry=REGISTRY
)


class _CatalogCollector(Collector):
    """Gauges read from the catalog (and the spool) at scrape time."""

    def __init__(self) -> None:
        self.catalog: Any = None
        self.spool: Any = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from .catalog.schema import Delivery, DeliveryState, Job, JobState, Study

        if self.catalog is None:
            return
        with self.catalog.session() as s:
            studies = s.execute(select(Study.state, func.count()).group_by(Study.state)).all()
            jobs = s.execute(
                select(Job.state, Job.analysis, func.count()).group_by(Job.state, Job.analysis)
            ).all()
            deliveries = s.execute(
                select(Delivery.destination, Delivery.state, func.count()).group_by(
                    Delivery.destination, Delivery.state
                )
            ).all()
        yield _gauge("ihgamp_studies", "Studies by state", ["state"], studies)
        yield _gauge(
            "ihgamp_jobs_by_state", "Jobs by state and analysis", ["state", "analysis"], jobs
        )
        yield _gauge(
            "ihgamp_deliveries",
            "Deliveries by destination and state",
            ["destination", "state"],
            deliveries,
        )
        dead = sum(n for _, state, n in deliveries if state == DeliveryState.DEAD_LETTER)
        yield _gauge("ihgamp_dead_letter_deliveries", "Deliveries given up on", [], [(dead,)])
        from .catalog import JobStore

        depth, oldest = JobStore(self.catalog).depth()
        yield _gauge("ihgamp_queue_depth", "Jobs queued", [], [(depth,)])
        yield _gauge("ihgamp_queue_oldest_seconds", "Age of the oldest queued job", [], [(oldest,)])
        running = sum(n for state, _, n in jobs if state == JobState.RUNNING)
        yield _gauge("ihgamp_jobs_running", "Jobs being scored", [], [(running,)])
        if self.spool is not None:
            yield _gauge(
                "ihgamp_spool_free_bytes",
                "Free space on the spool's file system",
                [],
                [(self.spool.free_bytes(),)],
            )


def _gauge(name: str, documentation: str, labels: list[str], rows: Any) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, documentation, labels=labels)
    for row in rows:
        *values, count = tuple(row)
        gauge.add_metric([str(v) for v in values], float(count))
    return gauge


_COLLECTOR = _CatalogCollector()
REGISTRY.register(_COLLECTOR)


#: ``ihgamp_pulls`` outcomes.
PULL_OUTCOMES = ("complete", "incomplete", "failed")


def initialise(analyses: Iterable[str], destinations: Iterable[str]) -> None:
    """Create every label set known at start, at 0 (idempotent).

    Parameters
    ----------
    analyses : iterable of str
        The enabled analyses (``ihgamp_jobs``, the scoring and queue histograms).
    destinations : iterable of str
        The configured destinations' names (``ihgamp_dispatch_attempts``).
    """
    from .catalog.schema import DELIVERY_OUTCOMES, JOB_OUTCOMES
    from .errors import StudyConflictError
    from .receive.guard import REFUSAL_STATUSES

    for analysis in analyses:
        SCORING_SECONDS.labels(analysis)
        JOB_QUEUE_SECONDS.labels(analysis)
        for outcome in JOB_OUTCOMES:
            JOBS.labels(outcome, analysis)
    for destination in destinations:
        for outcome in DELIVERY_OUTCOMES:
            DISPATCH_ATTEMPTS.labels(destination, outcome)
    for conflict in StudyConflictError.__subclasses__():
        STUDY_CONFLICTS.labels(conflict_rule(conflict))
    for reason in RefusalReason:
        ASSOCIATION_REFUSALS.labels(reason)
    for status in REFUSAL_STATUSES:
        INSTANCES_REFUSED.labels(refusal_status(status))
    for pull in PULL_OUTCOMES:
        PULLS.labels(pull)
    for redelivered in (True, False):
        JOB_MESSAGES_SKIPPED.labels(str(redelivered).lower())


def conflict_rule(kind: type[Exception]) -> str:
    """The ``rule`` label of a study conflict (``PatientConflictError`` -> ``patient``)."""
    return kind.__name__.removesuffix("ConflictError").lower()


def refusal_status(status: int) -> str:
    """The ``status`` label of a refused C-STORE (``0xA700``)."""
    return f"0x{status:04X}"


def observe(catalog: Any, spool: Any = None) -> None:
    """Read gauges from ``catalog`` (and ``spool``) at scrape time."""
    _COLLECTOR.catalog = catalog
    if spool is not None:
        _COLLECTOR.spool = spool


def render(catalog: Any = None) -> tuple[bytes, str]:
    """All metrics in the Prometheus text format."""
    if catalog is not None:
        observe(catalog)
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
