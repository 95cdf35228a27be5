"""A third analysis, defined outside the gateway: the tissue area of every H&E slide.

It exists to prove the registry is the only road: a site's data scientist writes a
module like this one (the contract's ``spec``/``model_key``/``run``/``outcome``/
``report``, reports built with the shared kit of :mod:`ihgamp_core.report`), names it in
``[analyses] plugins``, enables it, and the gateway routes, runs, reports, delivers and
serves it without a change to any gateway module. docs/analyses.md walks through it.

The "model" is Otsu tissue detection on a thumbnail: no weights, nothing to download.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.observation import Observation
from highdicom.sr import (
    AlgorithmIdentification,
    Measurement,
    MeasurementsAndQualitativeEvaluations,
    SourceImageForMeasurementGroup,
    TrackingIdentifier,
)
from pydicom.sr.coding import Code

from gateway.analyses import AnalysisEntry, LoadContext, register
from ihgamp_core.analysis import (
    AnalysisOutcome,
    AnalysisReport,
    AnalysisRequest,
    AnalysisSpec,
    Applicability,
    InputKind,
    ReportOptions,
    Stain,
)
from ihgamp_core.report import codes as c
from ihgamp_core.report.context import ReportContext, derive_output_ids
from ihgamp_core.report.fhir import (
    coding,
    default_patient_system,
    device_resource,
    local_coding,
    observation_frame,
    quantity,
    transaction_bundle,
)
from ihgamp_core.report.sr import (
    add_comments,
    device_observation_context,
    measurement_report_sr,
)
from ihgamp_core.slide.base import Slide
from ihgamp_core.slide.resample import read_thumbnail
from ihgamp_core.tissue import tissue_mask

NAME = "tissue-area"
MODEL = "toy-tissue-area/1"
#: Its own SR series number (HRD 9001, its map 9002, HER2 9003/9004).
SR_SERIES_NUMBER = 9101
PROCEDURE = Code("TOY-TISSUE", c.PRIVATE_SCHEME, "Tissue area from H&E (toy analysis)")
FRACTION = Code("TOY-TISSUE-F", c.PRIVATE_SCHEME, "Tissue fraction of the slide thumbnail")
STATEMENT = "TOY analysis for tests: not for clinical use."


@dataclass(frozen=True)
class TissueAreaResult:
    """Tissue fraction per slide (request order) and its mean."""

    fractions: tuple[float, ...]
    created: str

    @property
    def mean(self) -> float:
        return sum(self.fractions) / len(self.fractions)

    @property
    def call(self) -> str:
        return "tissue-ok" if self.mean >= 0.05 else "tissue-scant"


class TissueAreaAnalysis:
    """Tissue fraction of every H&E slide of a case."""

    spec = AnalysisSpec(NAME, Applicability(stains=frozenset({Stain.HE}), inputs=InputKind.SLIDES))
    model_key = MODEL

    def run(
        self, request: AnalysisRequest, slides: Mapping[str, Slide], case_id: str
    ) -> TissueAreaResult:
        fractions = tuple(
            float(tissue_mask(read_thumbnail(slides[key], 256)).mean())
            for key in request.slide_keys()
        )
        return TissueAreaResult(fractions, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def outcome(self, result: TissueAreaResult) -> AnalysisOutcome:
        return AnalysisOutcome(NAME, result.call, round(result.mean, 6), (), MODEL, True)

    def report(
        self, result: TissueAreaResult, context: ReportContext, options: ReportOptions
    ) -> AnalysisReport:
        inputs = [str(ds.SOPInstanceUID) for s in context.slides for ds in s.datasets]
        ids = derive_output_ids(context.study_uid, MODEL, NAME, inputs, 0)
        text = f"Tissue covers {result.mean:.0%} of the slide area (toy)."
        algorithm = AlgorithmIdentification(name="Toy tissue area", version="1")
        group = MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=ids.sr_sop_uid, identifier="toy"),
            algorithm_id=algorithm,
            measurements=[
                Measurement(
                    name=FRACTION,
                    value=result.mean,
                    unit=c.UCUM_NO_UNITS,
                    algorithm_id=algorithm,
                )
            ],
            source_images=[
                SourceImageForMeasurementGroup.from_source_image(s.base) for s in context.slides
            ],
        )
        add_comments(group, [text, STATEMENT])
        sr = measurement_report_sr(
            group,
            PROCEDURE,
            device_observation_context("Toy tissue area", MODEL, ids.device_uid, context),
            context,
            ids,
            "Toy tissue area (AI) DEMO",
            "Toy tissue area",
            "toy 1",
            options.supersedes,
            SR_SERIES_NUMBER,
        )
        issued = dt.datetime.now(dt.UTC)
        device = device_resource(
            ids, "Toy tissue area", MODEL, "Toy analysis", "1", [("kind", "toy")], STATEMENT
        )

        def observation(device_url: str) -> Observation:
            frame = observation_frame(
                ids,
                context,
                device_url,
                "Toy tissue area",
                result.created,
                [text, STATEMENT],
                options.patient_system or default_patient_system,
                issued,
                options.supersedes,
            )
            return Observation.model_validate(
                {
                    **frame,
                    "code": {"coding": [local_coding(PROCEDURE)], "text": "Tissue area (toy)"},
                    "valueQuantity": quantity(result.mean, "1", "fraction"),
                    "interpretation": [
                        {"coding": [coding(c.FHIR_LOCAL, result.call, result.call)]}
                    ],
                }
            )

        bundle = None
        if context.patient_id:
            bundle = transaction_bundle(
                ids, device, observation, context, "Toy tissue area", issued, options.supersedes
            )
        document: dict[str, Any] = {
            "analysis": NAME,
            "created": result.created,
            "fractions": list(result.fractions),
            "call": result.call,
            "triage": {"category": "none", "text": text, "statement": STATEMENT},
            "notes": [],
            "outputs": {
                "key": ids.key,
                "sr_sop_instance_uid": ids.sr_sop_uid,
                "sr_series_instance_uid": ids.sr_series_uid,
                "observation_identifier": ids.observation_identifier,
            },
        }
        return AnalysisReport(
            analysis=NAME,
            outcome=self.outcome(result),
            document=document,
            triage=None,
            key=ids.key,
            sr=sr,
            heatmaps=(),
            bundle=bundle,
            observation_identifier=ids.observation_identifier,
            observation_code=(c.FHIR_LOCAL, PROCEDURE.value),
            ids=ids,
        )


def _load(context: LoadContext) -> TissueAreaAnalysis:
    return TissueAreaAnalysis()


ENTRY = register(AnalysisEntry(spec=TissueAreaAnalysis.spec, load=_load, title="Tissue area (toy)"))
