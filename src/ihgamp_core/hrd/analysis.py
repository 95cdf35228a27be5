"""HRD as an analysis under the contract: the existing engine and reports, unchanged.

:class:`HrdAnalysis` adds nothing to the HRD model: :meth:`~HrdAnalysis.run` is
:meth:`~ihgamp_core.hrd.engine.Engine.score_case` on the request's H&E slides, and
:meth:`~HrdAnalysis.report` is :func:`~ihgamp_core.report.build_reports`. The tests prove
that results, SR and FHIR are identical to calling those directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..analysis.contract import (
    AnalysisName,
    AnalysisOutcome,
    AnalysisReport,
    AnalysisRequest,
    AnalysisSpec,
    Applicability,
    ReportOptions,
    SeriesInput,
    request_slides,
)
from ..errors import ParameterError
from ..report import ReportContext
from ..report.codes import LOINC
from ..report.fhir import default_patient_system
from ..slide.base import Slide
from .codes import LOINC_HRD
from .engine import Engine, ScoringOptions
from .reports import CaseReport, build_reports
from .result import CaseResult, result_to_dict
from .spec import HRD_APPLICABILITY
from .triage import TriagePolicy

__all__ = ["HRD_APPLICABILITY", "HrdAnalysis", "hrd_document"]


def hrd_document(report: CaseReport) -> dict[str, Any]:
    """The ``result.json`` content of an HRD report (without the file list).

    The engine result (``ihgamp-result/1``) plus ``triage``, ``notes`` and ``outputs``
    (the identifiers of the SR, heatmaps and Observation).
    """
    data = report.document(result_to_dict(report.result))
    data["outputs"]["fhir_observation_identifier"] = report.ids.observation_identifier
    return data


class HrdAnalysis:
    """The IHGAMP HRD model as an analysis.

    Parameters
    ----------
    engine : Engine
        Backbone and head.
    options : ScoringOptions, optional
        Run-time options (tile cap, batch size, pipeline).
    applicability : Applicability, optional
        Overrides :data:`HRD_APPLICABILITY` (e.g. series-description patterns).
    """

    def __init__(
        self,
        engine: Engine,
        options: ScoringOptions | None = None,
        applicability: Applicability | None = None,
    ) -> None:
        self.engine = engine
        self.options = options or ScoringOptions()
        self._spec = AnalysisSpec(AnalysisName.HRD, applicability or HRD_APPLICABILITY)

    @property
    def spec(self) -> AnalysisSpec:
        """Name and applicability."""
        return self._spec

    @property
    def model_key(self) -> str:
        """Head, version, backbone weights and preset."""
        return self.engine.model.key

    def run(
        self, request: AnalysisRequest, slides: Mapping[str, Slide | SeriesInput], case_id: str
    ) -> CaseResult:
        """Score the request's slides as one case with :meth:`Engine.score_case`.

        Raises
        ------
        ParameterError
            If the request is not an HRD request or names a slide not given.
        SlideReadError
            If a slide's pixels cannot be read.
        """
        if request.analysis != AnalysisName.HRD:
            raise ParameterError(f"an {request.analysis} request given to the HRD analysis")
        ordered = list(request_slides(request, slides).values())
        return self.engine.score_case(ordered, case_id, self.options)

    def outcome(self, result: CaseResult) -> AnalysisOutcome:
        """Call, probability, QC flags, model."""
        return AnalysisOutcome(
            analysis=AnalysisName.HRD,
            call=str(result.call),
            value=result.probability,
            qc_flags=tuple(str(f) for f in result.qc_flags),
            model_key=result.model.key,
            demo=result.model.demo,
            threshold=result.threshold,
        )

    def report(
        self, result: CaseResult, context: ReportContext, options: ReportOptions
    ) -> AnalysisReport:
        """Triage, SR, Parametric Maps, FHIR: :func:`build_reports` as before."""
        policy = (
            TriagePolicy(not_validated_patterns=options.not_validated_patterns)
            if options.not_validated_patterns is not None
            else None
        )
        report = build_reports(
            result,
            context,
            self.engine.head.probability,
            options.thumbnails,
            policy,
            options.patient_system or default_patient_system,
            supersedes=options.supersedes,
        )
        return AnalysisReport.from_outputs(
            report, self.outcome(result), hrd_document(report), (LOINC, LOINC_HRD)
        )
