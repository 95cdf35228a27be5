"""Prometheus metrics: process counters plus catalog gauges read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from ..catalog import Catalog, JobStore
from ..catalog.deliveries import DeliveryStore

__all__ = [
    "INSTANCES_RECEIVED",
    "INSTANCES_REFUSED",
    "REGISTRY",
    "SCORING_SECONDS",
    "render_metrics",
]

REGISTRY = CollectorRegistry()
INSTANCES_RECEIVED = Counter(
    "ihgamp_instances_received", "Instances stored (acknowledged with 0x0000)", registry=REGISTRY
)
INSTANCES_REFUSED = Counter(
    "ihgamp_instances_refused", "C-STORE requests refused", ["status"], registry=REGISTRY
)
SCORING_SECONDS = Histogram(
    "ihgamp_scoring_seconds",
    "Time to score one study",
    registry=REGISTRY,
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800),
)


class _CatalogCollector(Collector):
    def __init__(self) -> None:
        self.catalog: Catalog | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.catalog is None:
            return
        studies = GaugeMetricFamily("ihgamp_studies", "Studies by state", labels=["state"])
        for state, count in self.catalog.counts().items():
            studies.add_metric([state], count)
        yield studies
        jobs = GaugeMetricFamily("ihgamp_jobs", "Recent jobs by state", labels=["state"])
        by_state: dict[str, int] = {}
        for job in JobStore(self.catalog).jobs(limit=10_000):
            by_state[job.state] = by_state.get(job.state, 0) + 1
        for state, count in by_state.items():
            jobs.add_metric([state], count)
        yield jobs
        deliveries = GaugeMetricFamily(
            "ihgamp_deliveries",
            "Deliveries by destination and state",
            labels=["destination", "state"],
        )
        counts: dict[tuple[str, str], int] = {}
        for d in DeliveryStore(self.catalog).deliveries(limit=100_000):
            counts[(d.destination, d.state)] = counts.get((d.destination, d.state), 0) + 1
        for (destination, state), count in counts.items():
            deliveries.add_metric([destination, state], count)
        yield deliveries


_COLLECTOR = _CatalogCollector()
REGISTRY.register(_COLLECTOR)


def render_metrics(catalog: Catalog) -> tuple[bytes, str]:
    """Render all metrics in the Prometheus text format."""
    _COLLECTOR.catalog = catalog
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
