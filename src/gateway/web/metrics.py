"""The ``/metrics`` route's rendering (the metrics themselves: :mod:`gateway.metrics`)."""

from __future__ import annotations

from ..catalog import Catalog
from ..metrics import render

__all__ = ["render_metrics"]


def render_metrics(catalog: Catalog) -> tuple[bytes, str]:
    """Render all metrics of this process in the Prometheus text format."""
    return render(catalog)
