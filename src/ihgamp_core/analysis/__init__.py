"""Analyses: the contract every model behind the gateway follows, and routing.

* :mod:`.contract`: :class:`Analysis`, :class:`Applicability`, :class:`AnalysisRequest`,
  :class:`AnalysisReport`, :class:`AnalysisOutcome` and the value sets.
* :mod:`.metadata`: reading stain, body part and block from DICOM headers, vendor
  metadata and site rules (:class:`SeriesMetadata`).
* :mod:`.routing`: :func:`route`, the pure function from a study's slides to requests,
  refusals and "no analysis applies".
Each analysis has its own folder beside this package: :mod:`ihgamp_core.hrd`,
:mod:`ihgamp_core.her2`.
"""

from .contract import (
    ANALYSIS_NAME_RE,
    Analysis,
    AnalysisName,
    AnalysisOutcome,
    AnalysisReport,
    AnalysisRequest,
    AnalysisSpec,
    Applicability,
    HeatmapObject,
    InputKind,
    ModalityPath,
    ReportOptions,
    SeriesInput,
    SeriesKind,
    SlideRef,
    SlideRole,
    Stain,
    check_analysis_name,
    request_slides,
    series_kind,
)
from .metadata import (
    MetadataRules,
    SeriesMetadata,
    StainRule,
    classify_stain,
    series_metadata_from_dataset,
    series_metadata_from_properties,
)
from .routing import Refusal, RefusalKind, RoutingDecision, RoutingLimits, Skip, route

__all__ = [
    "SeriesInput",
    "SeriesKind",
    "series_kind",
    "request_slides",
    "ANALYSIS_NAME_RE",
    "check_analysis_name",
    "Analysis",
    "AnalysisName",
    "AnalysisOutcome",
    "AnalysisReport",
    "AnalysisRequest",
    "AnalysisSpec",
    "Applicability",
    "HeatmapObject",
    "InputKind",
    "MetadataRules",
    "ModalityPath",
    "Refusal",
    "RefusalKind",
    "ReportOptions",
    "RoutingDecision",
    "RoutingLimits",
    "SeriesMetadata",
    "SlideRef",
    "SlideRole",
    "Skip",
    "Stain",
    "StainRule",
    "classify_stain",
    "route",
    "series_metadata_from_dataset",
    "series_metadata_from_properties",
]
