"""HER2 as an analysis under the contract: routing declaration, run, reports.

Applies to breast (Body Part Examined ``BREAST``) H&E and HER2-IHC slides, per tissue
block: H&E + IHC -> ``dual``; H&E alone -> ``he-only-synthesised-ihc``; IHC alone (in a
study without H&E) -> ``ihc-only`` (see :mod:`ihgamp_core.analysis.routing`).
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
    ModalityPath,
    ReportOptions,
    SeriesInput,
    SlideRole,
    request_slides,
)
from ..errors import ParameterError
from ..report.codes import LOINC
from ..report.context import ReportContext
from ..report.fhir import default_patient_system
from ..slide.base import Slide
from .codes import LOINC_HER2_IHC
from .infer import Her2Options, score_her2
from .model import Her2Model
from .reports import Her2Report, build_her2_reports, missing_note
from .result import Her2Result, her2_result_to_dict
from .spec import HER2_APPLICABILITY

__all__ = ["HER2_APPLICABILITY", "Her2Analysis", "her2_document"]


def her2_document(report: Her2Report) -> dict[str, Any]:
    """The ``result.json`` content of a HER2 report (without the file list)."""
    note = missing_note(report.result)
    return report.document(her2_result_to_dict(report.result), [note] if note else [])


class Her2Analysis:
    """The HER2 model as an analysis.

    Parameters
    ----------
    model : Her2Model
        The loaded model (a checkpoint, or the DEMO model).
    options : Her2Options, optional
        Run-time options.
    applicability : Applicability, optional
        Overrides :data:`HER2_APPLICABILITY`.
    """

    def __init__(
        self,
        model: Her2Model,
        options: Her2Options | None = None,
        applicability: Applicability | None = None,
    ) -> None:
        self.model = model
        self.options = options or Her2Options()
        self._spec = AnalysisSpec(AnalysisName.HER2, applicability or HER2_APPLICABILITY)

    @property
    def spec(self) -> AnalysisSpec:
        """Name and applicability."""
        return self._spec

    @property
    def model_key(self) -> str:
        """Name, version, weights, configuration."""
        return self.model.key

    def run(
        self, request: AnalysisRequest, inputs: Mapping[str, Slide | SeriesInput], case_id: str
    ) -> Her2Result:
        """Score the request's block along its modality path.

        Raises
        ------
        ParameterError
            If the request is not a HER2 request, names a slide not given, or its
            slides do not fit its path.
        PairingError
            If the H&E and IHC tissue do not match.
        """
        if request.analysis != AnalysisName.HER2 or request.path is None:
            raise ParameterError(f"an {request.analysis} request given to the HER2 analysis")
        slides = request_slides(request, inputs)
        he_keys, ihc_keys = request.slide_keys(SlideRole.HE), request.slide_keys(SlideRole.IHC)
        expected = {
            ModalityPath.DUAL: (1, 1),
            ModalityPath.HE_ONLY: (1, 0),
            ModalityPath.IHC_ONLY: (0, 1),
        }[request.path]
        if (len(he_keys), len(ihc_keys)) != expected:
            raise ParameterError(
                f"a {request.path} request needs {expected[0]} H&E and {expected[1]} IHC "
                f"slide(s), got {len(he_keys)} and {len(ihc_keys)}"
            )
        he = slides[he_keys[0]] if he_keys else None
        ihc = slides[ihc_keys[0]] if ihc_keys else None
        return score_her2(self.model, he, ihc, case_id, self.options)

    def outcome(self, result: Her2Result) -> AnalysisOutcome:
        """Call, probability of the score, QC flags, model, path."""
        return AnalysisOutcome(
            analysis=AnalysisName.HER2,
            call=str(result.call),
            value=result.score_probability,
            qc_flags=tuple(str(f) for f in result.qc_flags),
            model_key=result.model.key,
            demo=result.model.demo,
            path=result.path,
        )

    def report(
        self, result: Her2Result, context: ReportContext, options: ReportOptions
    ) -> AnalysisReport:
        """Triage, SR, class-map Segmentation + PNG, FHIR."""
        report = build_her2_reports(
            result,
            context,
            options.thumbnails,
            options.patient_system or default_patient_system,
            options.supersedes,
        )
        return AnalysisReport.from_outputs(
            report, self.outcome(result), her2_document(report), (LOINC, LOINC_HER2_IHC)
        )
