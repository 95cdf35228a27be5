"""Building a scored study's reports (SR, heatmaps, FHIR) into the outbox."""

from .writer import ReportWriter

__all__ = ["ReportWriter"]
