"""The DICOM Structured Report: a TID 1500 Measurement Report in a Comprehensive 3D SR.

Content tree (built with highdicom)::

    Imaging Measurement Report (TID 1500)
    ├── Language, observer context: the algorithm as a device observer
    ├── Subject context: specimen (UID, identifier, container = glass slide)
    ├── Procedure reported: HRD estimation from H&E whole-slide images (99IHGAMP)
    ├── Image library: the level-0 image of each slide
    └── Imaging Measurements
        └── Measurement Group (TID 1501), tracking id = the result key
            ├── Algorithm identification (TID 4019): name, version, parameters
            ├── Source images: the slides
            ├── Measurements: HRD probability (1), continuous score ({score}),
            │   operating threshold (1)
            ├── Qualitative evaluations: HRD call, triage recommendation, QC flags
            └── Comments (TEXT): the triage text and the intended-use statement

The SR takes the slides' Study Instance UID and copies their patient and study
modules (highdicom does this from the evidence); it is a new series with UIDs from
:func:`~ihgamp_core.report.context.output_ids`. An SR that replaces an earlier result
of the study (scored on partial input) lists that SR in its Predecessor Documents
Sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import highdicom as hd
from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    SubjectContext,
    SubjectContextSpecimen,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from .. import __version__
from ..result import CaseResult
from . import codes as c
from .context import OutputIds, ReportContext, Supersedes
from .triage import Triage

__all__ = [
    "MANUFACTURER",
    "add_comments",
    "algorithm_parameters",
    "build_sr",
    "device_observation_context",
    "measurement_report_sr",
]

MANUFACTURER = "IHGAMP pathology gateway"
#: Series Number of the HRD SR (its map: 9002, ``heatmap.py``; HER2's: ``her2/reports.py``).
SR_SERIES_NUMBER = 9001


def algorithm_parameters(result: CaseResult) -> list[str]:
    """The algorithm parameters recorded in TID 4019.

    Backbone, tiling, threshold, and the arithmetic the embeddings were computed with
    (``precision``: int8 approximates fp32 within the bound in docs/benchmarks.md).
    """
    t = result.tiling
    return [
        f"backbone={result.model.backbone.architecture}",
        f"backbone_weights={result.model.backbone.weights}",
        f"preset={result.model.preset}",
        f"tile_px={t.get('tile_px')}",
        f"target_mpp={t.get('target_mpp')}",
        f"min_tissue_fraction={t.get('min_tissue_fraction')}",
        f"max_tiles={t.get('max_tiles')}",
        f"operating_threshold={result.threshold:.6f}",
        f"endpoint={result.model.endpoint}",
        f"precision={result.runtime.precision}",
        f"pipeline={result.runtime.pipeline}",
    ]


def device_observation_context(
    device_name: str, model_name: str, device_uid: str, context: ReportContext
) -> ObservationContext:
    """Observer = the algorithm as a device; subject = the first slide's specimen.

    Parameters
    ----------
    device_name : str
        Device Observer Name (the model's name).
    model_name : str
        Device Observer Model Name (name and version).
    device_uid : str
        Device Observer UID (derived from the model).
    context : ReportContext
        Source headers (the first slide's specimen is the subject).
    """
    device = DeviceObserverIdentifyingAttributes(
        uid=device_uid,
        name=device_name[:64],
        manufacturer_name=MANUFACTURER,
        model_name=model_name[:64],
    )
    observer = ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device
    )
    first = context.slides[0]
    subject = None
    if first.specimen_uid:
        subject = SubjectContext(
            subject_class=codes.DCM.Specimen,
            subject_class_specific_context=SubjectContextSpecimen(
                uid=first.specimen_uid,
                identifier=first.specimen_identifier,
                container_identifier=first.container_identifier,
            ),
        )
    return ObservationContext(observer_device_context=observer, subject_context=subject)


def add_comments(group: MeasurementsAndQualitativeEvaluations, texts: Sequence[str]) -> None:
    """Append TEXT comments (DCM 121106, at most 1024 characters each) to a group."""
    container = group[0]
    for text in texts:
        container.ContentSequence.append(
            TextContentItem(
                name=c.DCM_COMMENT,
                value=text[:1024],
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )


def measurement_report_sr(
    group: MeasurementsAndQualitativeEvaluations,
    procedure: Any,
    observation_context: ObservationContext,
    context: ReportContext,
    ids: OutputIds,
    series_description: str,
    model_name: str,
    software_versions: str,
    supersedes: Supersedes | None = None,
    series_number: int = SR_SERIES_NUMBER,
) -> Comprehensive3DSR:
    """A TID 1500 Measurement Report with one group in a Comprehensive 3D SR.

    The image library and the evidence are the case's slides; the SR joins the slides'
    study as a new series with the UIDs of ``ids`` and ``series_number`` (each analysis
    has its own, so a PACS lists their SRs apart). An SR that replaces an earlier
    result of the study lists that SR in its Predecessor Documents Sequence.
    """
    bases = [slide.base for slide in context.slides]
    report = MeasurementReport(
        observation_context=observation_context,
        procedure_reported=procedure,
        imaging_measurements=[group],
        referenced_images=bases,
    )
    evidence = [ds for slide in context.slides for ds in slide.datasets]
    previous = None
    if supersedes is not None:
        earlier = Dataset()
        earlier.StudyInstanceUID = supersedes.sr_study_uid
        earlier.SeriesInstanceUID = supersedes.sr_series_uid
        earlier.SOPClassUID = supersedes.sr_sop_class_uid
        earlier.SOPInstanceUID = supersedes.sr_sop_uid
        previous = [earlier]
    sr = Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=ids.sr_series_uid,
        series_number=series_number,
        sop_instance_uid=ids.sr_sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=True,
        is_verified=False,
        previous_versions=previous,
    )
    sr.SeriesDescription = series_description[:64]
    sr.ManufacturerModelName = model_name[:64]
    sr.SoftwareVersions = software_versions[:64]
    sr.CodingSchemeIdentificationSequence = [c.coding_scheme_identification()]
    return sr


def build_sr(
    result: CaseResult,
    triage: Triage,
    context: ReportContext,
    ids: OutputIds,
    supersedes: Supersedes | None = None,
) -> Comprehensive3DSR:
    """Build the SR for one scored case.

    Parameters
    ----------
    result : CaseResult
        The engine's result.
    triage : Triage
        The triage outcome.
    context : ReportContext
        Source headers of the case's slides.
    ids : OutputIds
        Stable UIDs.
    supersedes : Supersedes, optional
        The earlier SR of the study this one replaces (its predecessor).

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        A valid SR (validated by highdicom on construction).
    """
    algorithm = AlgorithmIdentification(
        name="IHGAMP HRD",
        version=result.model.head_version[:64],
        parameters=algorithm_parameters(result),
    )
    measurements = [
        Measurement(
            name=c.OPERATING_THRESHOLD,
            value=result.threshold,
            unit=c.UCUM_NO_UNITS,
            algorithm_id=algorithm,
        ),
    ]
    if result.probability is not None and result.score is not None:
        measurements[:0] = [
            Measurement(
                name=c.HRD_PROBABILITY,
                value=result.probability,
                unit=c.UCUM_NO_UNITS,
                algorithm_id=algorithm,
            ),
            Measurement(
                name=c.HRD_SCORE, value=result.score, unit=c.UCUM_SCORE, algorithm_id=algorithm
            ),
        ]
    evaluations = [
        QualitativeEvaluation(c.HRD_CALL, c.CALL_CODES[result.call]),
        QualitativeEvaluation(c.TRIAGE, c.TRIAGE_CODES[triage.category]),
        *(QualitativeEvaluation(c.QC_FLAG, c.QC_FLAGS[flag]) for flag in result.qc_flags),
    ]
    bases = [slide.base for slide in context.slides]
    group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(
            uid=ids.sr_sop_uid, identifier=f"IHGAMP HRD {ids.key[:16]}"
        ),
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[SourceImageForMeasurementGroup.from_source_image(ds) for ds in bases],
    )
    add_comments(group, (triage.text, triage.statement))
    m = result.model
    return measurement_report_sr(
        group,
        c.PROCEDURE,
        device_observation_context(
            m.head_name, f"{m.head_name} {m.head_version}", ids.device_uid, context
        ),
        context,
        ids,
        "IHGAMP HRD estimate (AI)" + (" DEMO" if m.demo else ""),
        m.head_name,
        f"ihgamp {__version__}; head {m.head_version}",
        supersedes,
    )
