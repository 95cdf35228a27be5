"""Analyses defined outside the gateway: tissue area of H&E slides, mean HU of CT volumes.

It exists to prove the registry is the only road: a site's data scientist writes a
module like this one (the contract's ``spec``/``model_key``/``run``/``outcome``/
``report``, reports built with the shared kit of :mod:`ihgamp_core.report`), names it in
``[analyses] plugins``, enables it, and the gateway routes, runs, reports, delivers and
serves it without a change to any gateway module. docs/analyses.md walks through it.

The "models" are Otsu tissue detection on a thumbnail and the mean attenuation of a CT
volume (an input that is not a slide): no weights, nothing to download.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydicom
from fhir.resources.R4B.observation import Observation
from highdicom.sr import (
    AlgorithmIdentification,
    Measurement,
    MeasurementsAndQualitativeEvaluations,
    SourceImageForMeasurementGroup,
    TrackingIdentifier,
)
from pydicom.sr.coding import Code

from gateway.analyses import AnalysisEntry, register
from ihgamp_core.analysis import (
    AnalysisOutcome,
    AnalysisReport,
    AnalysisRequest,
    AnalysisSpec,
    Applicability,
    InputKind,
    ReportOptions,
    SeriesInput,
    SeriesKind,
    Stain,
    request_slides,
)
from ihgamp_core.errors import ParameterError
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
VOLUME_NAME = "ct-volume"
MODEL = "toy-tissue-area/1"
#: Its own SR series number (HRD 9001, its map 9002, HER2 9003/9004).
SR_SERIES_NUMBER = 9101
#: The procedure code each toy's SR and Observation carry.
PROCEDURE = Code("TOY-TISSUE-AREA", c.PRIVATE_SCHEME, "tissue-area (toy analysis)")
FRACTION = Code("TOY-TISSUE-F", c.PRIVATE_SCHEME, "Tissue fraction of the slide thumbnail")
MEAN_HU = Code("TOY-CT-HU", c.PRIVATE_SCHEME, "Mean attenuation of the CT volume")
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
        self, request: AnalysisRequest, inputs: Mapping[str, Slide | SeriesInput], case_id: str
    ) -> TissueAreaResult:
        slides = request_slides(request, inputs)
        fractions = tuple(
            float(tissue_mask(read_thumbnail(s, 256)).mean()) for s in slides.values()
        )
        return TissueAreaResult(fractions, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def outcome(self, result: TissueAreaResult) -> AnalysisOutcome:
        return AnalysisOutcome(NAME, result.call, round(result.mean, 6), (), MODEL, True)

    def report(
        self, result: TissueAreaResult, context: ReportContext, options: ReportOptions
    ) -> AnalysisReport:
        text = f"Tissue covers {result.mean:.0%} of the slide area (toy)."
        document = {"fractions": list(result.fractions), "call": result.call}
        return toy_report(
            self.outcome(result), FRACTION, text, result.created, document, context, options
        )


def toy_report(
    outcome: AnalysisOutcome,
    concept: Code,
    text: str,
    created: str,
    document: dict[str, Any],
    context: ReportContext,
    options: ReportOptions,
) -> AnalysisReport:
    """SR, FHIR Bundle and document of a toy result: one measurement, built with the kit."""
    name, value = outcome.analysis, float(outcome.value or 0.0)
    inputs = [str(ds.SOPInstanceUID) for s in context.slides for ds in s.datasets]
    ids = derive_output_ids(context.study_uid, outcome.model_key, name, inputs, 0)
    procedure = Code(f"TOY-{name.upper()}"[:16], c.PRIVATE_SCHEME, f"{name} (toy analysis)")
    algorithm = AlgorithmIdentification(name=f"Toy {name}", version="1")
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=ids.sr_sop_uid, identifier="toy"),
        algorithm_id=algorithm,
        measurements=[
            Measurement(name=concept, value=value, unit=c.UCUM_NO_UNITS, algorithm_id=algorithm)
        ],
        source_images=[
            SourceImageForMeasurementGroup.from_source_image(s.base) for s in context.slides
        ],
    )
    add_comments(group, [text, STATEMENT])
    sr = measurement_report_sr(
        group,
        procedure,
        device_observation_context(f"Toy {name}", outcome.model_key, ids.device_uid, context),
        context,
        ids,
        f"Toy {name} (AI) DEMO",
        f"Toy {name}",
        "toy 1",
        options.supersedes,
        SR_SERIES_NUMBER,
    )
    issued = dt.datetime.now(dt.UTC)
    device = device_resource(
        ids, f"Toy {name}", outcome.model_key, "Toy analysis", "1", [("kind", "toy")], STATEMENT
    )

    def observation(device_url: str) -> Observation:
        frame = observation_frame(
            ids,
            context,
            device_url,
            f"Toy {name}",
            created,
            [text, STATEMENT],
            options.patient_system or default_patient_system,
            issued,
            options.supersedes,
        )
        return Observation.model_validate(
            {
                **frame,
                "code": {"coding": [local_coding(procedure)], "text": f"{name} (toy)"},
                "valueQuantity": quantity(value, "1", "value"),
                "interpretation": [{"coding": [coding(c.FHIR_LOCAL, outcome.call, outcome.call)]}],
            }
        )

    bundle = None
    if context.patient_id:
        bundle = transaction_bundle(
            ids, device, observation, context, f"Toy {name}", issued, options.supersedes
        )
    document = {
        "analysis": name,
        "created": created,
        **document,
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
        analysis=name,
        outcome=outcome,
        document=document,
        triage=None,
        key=ids.key,
        sr=sr,
        heatmaps=(),
        bundle=bundle,
        observation_identifier=ids.observation_identifier,
        observation_code=(c.FHIR_LOCAL, procedure.value),
        ids=ids,
    )


@dataclass(frozen=True)
class VolumeResult:
    """Voxels and mean attenuation (HU) of the CT volumes of a case."""

    voxels: int
    mean_hu: float
    created: str


class CtVolumeAnalysis:
    """Voxel count and mean HU of every CT volume series of a case (inputs beyond slides)."""

    spec = AnalysisSpec(
        VOLUME_NAME,
        Applicability(
            inputs=InputKind.SERIES,
            modalities=frozenset({"CT"}),
            series_kinds=frozenset({SeriesKind.VOLUME}),
        ),
    )
    model_key = "toy-ct-volume/1"

    def run(
        self, request: AnalysisRequest, inputs: Mapping[str, Slide | SeriesInput], case_id: str
    ) -> VolumeResult:
        values: list[float] = []
        for key in request.slide_keys():
            series = inputs[key]
            if not isinstance(series, SeriesInput):
                raise ParameterError(f"{key} is not a volume series")
            for path in series.paths:
                ds = pydicom.dcmread(path)
                hu = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(
                    ds.get("RescaleIntercept", 0)
                )
                values.extend(float(v) for v in hu.ravel())
        created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return VolumeResult(len(values), sum(values) / len(values), created)

    def outcome(self, result: VolumeResult) -> AnalysisOutcome:
        call = "dense" if result.mean_hu > 0 else "lucent"
        return AnalysisOutcome(
            VOLUME_NAME, call, round(result.mean_hu, 3), (), self.model_key, True
        )

    def report(
        self, result: VolumeResult, context: ReportContext, options: ReportOptions
    ) -> AnalysisReport:
        text = f"{result.voxels} voxels, mean {result.mean_hu:.1f} HU (toy)."
        document = {"voxels": result.voxels, "mean_hu": result.mean_hu}
        return toy_report(
            self.outcome(result), MEAN_HU, text, result.created, document, context, options
        )


ENTRY = register(
    AnalysisEntry(
        spec=TissueAreaAnalysis.spec,
        load=lambda context: TissueAreaAnalysis(),
        title="Tissue area (toy)",
    )
)
VOLUME_ENTRY = register(
    AnalysisEntry(
        spec=CtVolumeAnalysis.spec,
        load=lambda context: CtVolumeAnalysis(),
        title="CT volume (toy)",
    )
)
