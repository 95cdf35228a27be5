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

__all__ = ["MANUFACTURER", "algorithm_parameters", "build_sr"]

MANUFACTURER = "IHGAMP pathology gateway"
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


def _observation_context(result: CaseResult, context: ReportContext, ids: OutputIds) -> Any:
    device = DeviceObserverIdentifyingAttributes(
        uid=ids.device_uid,
        name=result.model.head_name[:64],
        manufacturer_name=MANUFACTURER,
        model_name=f"{result.model.head_name} {result.model.head_version}"[:64],
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
    container = group[0]
    for text in (triage.text, triage.statement):
        container.ContentSequence.append(
            TextContentItem(
                name=c.DCM_COMMENT,
                value=text[:1024],
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    report = MeasurementReport(
        observation_context=_observation_context(result, context, ids),
        procedure_reported=c.PROCEDURE,
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
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=ids.sr_sop_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=True,
        is_verified=False,
        previous_versions=previous,
    )
    sr.SeriesDescription = ("IHGAMP HRD estimate (AI)" + (" DEMO" if result.model.demo else ""))[
        :64
    ]
    sr.ManufacturerModelName = result.model.head_name[:64]
    sr.SoftwareVersions = f"ihgamp {__version__}; head {result.model.head_version}"[:64]
    sr.CodingSchemeIdentificationSequence = [c.coding_scheme_identification()]
    return sr
