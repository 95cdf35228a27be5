"""The DICOM Structured Report every analysis issues.

The DICOM Structured Report every analysis issues: a TID 1500 Measurement Report in a
Comprehensive 3D SR, built with highdicom from the parts below (the algorithm as device
observer, the specimen subject context, the measurement group, comments). Each analysis
fills it with its own measurements and evaluations (``hrd/sr.py``, ``her2/reports.py``).

The SR takes the slides' Study Instance UID and copies their patient and study modules
(highdicom does this from the evidence); an SR that replaces an earlier result lists
that SR in its Predecessor Documents Sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import highdicom as hd
from highdicom.sr import (
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    SubjectContext,
    SubjectContextSpecimen,
    TextContentItem,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from . import codes as c
from .context import OutputIds, ReportContext, Supersedes

__all__ = [
    "MANUFACTURER",
    "add_comments",
    "device_observation_context",
    "measurement_report_sr",
]

MANUFACTURER = "IHGAMP pathology gateway"


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
    supersedes: Supersedes | None,
    series_number: int,
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
