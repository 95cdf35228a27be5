"""Building a scored study's reports (SR, heatmaps, FHIR) into the outbox."""

from .writer import ReportWriter, report_summary

__all__ = ["ReportWriter", "report_summary"]
