"""HRD's FHIR resources: Device, Observation and their transaction Bundle.

The model as a Device, the estimate as an Observation, built on the shared frame of
:mod:`ihgamp_core.report.fhir`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.observation import Observation

from ..report import codes as c
from ..report.context import OutputIds, ReportContext, Supersedes
from ..report.fhir import (
    PatientSystem,
    coded_component,
    coding,
    default_patient_system,
    device_resource,
    local_coding,
    observation_frame,
    quantity_component,
    transaction_bundle,
)
from ..report.triage import Triage
from . import codes as hc
from .result import Call, CaseResult

__all__ = ["build_bundle", "build_device", "build_observation"]

_INTERPRETATION = {
    Call.HRD_LIKELY: ("POS", "Positive"),
    Call.HRD_UNLIKELY: ("NEG", "Negative"),
    Call.NO_CALL: ("IND", "Indeterminate"),
}


def build_device(result: CaseResult, ids: OutputIds) -> Device:
    """The model as a FHIR Device (name, version, backbone identity, intended use)."""
    m = result.model
    return device_resource(
        ids,
        m.display_name,
        m.head_name,
        "AI software: HRD estimate from H&E whole-slide image morphology",
        m.head_version,
        [
            ("backbone", f"{m.backbone.architecture} {m.backbone.weights}"),
            ("preset", m.preset),
            ("endpoint", m.endpoint),
        ],
        m.intended_use,
    )


def build_observation(
    result: CaseResult,
    triage: Triage,
    context: ReportContext,
    ids: OutputIds,
    device_ref: str,
    patient_system: PatientSystem = default_patient_system,
    issued: dt.datetime | None = None,
    supersedes: Supersedes | None = None,
) -> Observation:
    """The HRD estimate as a FHIR Observation (see the module docstring).

    With ``supersedes``, the Observation keeps the identifier of the result it replaces
    (first) and adds its own, and its status is ``amended``.

    Raises
    ------
    ValueError
        If the source study has no Patient ID (a result needs a subject).
    """
    issued = issued or dt.datetime.now(dt.UTC)
    frame = observation_frame(
        ids,
        context,
        device_ref,
        result.model.display_name,
        result.created,
        (triage.text, triage.statement),
        patient_system,
        issued,
        supersedes,
    )
    components: list[dict[str, Any]] = []
    if result.probability is not None:
        components.append(
            quantity_component(hc.HRD_PROBABILITY, result.probability, "1", "probability")
        )
    if result.score is not None:
        components.append(quantity_component(hc.HRD_SCORE, result.score, "{score}", "score"))
    components.append(
        quantity_component(hc.OPERATING_THRESHOLD, result.threshold, "1", "probability")
    )
    components.append(coded_component(c.TRIAGE, hc.TRIAGE_CODES[triage.category], triage.text))
    components += [coded_component(c.QC_FLAG, c.QC_FLAGS[flag]) for flag in result.qc_flags]
    interp_code, interp_display = _INTERPRETATION[result.call]
    call_code = hc.CALL_CODES[result.call]
    return Observation.model_validate(
        {
            **frame,
            "code": {
                "coding": [
                    coding(c.LOINC, hc.LOINC_HRD, hc.LOINC_HRD_DISPLAY),
                    coding(
                        c.FHIR_LOCAL,
                        "HRD-EST-IMAGE",
                        "HRD status, AI estimate from H&E whole-slide image morphology",
                    ),
                ],
                "text": "HRD status: AI estimate from H&E morphology (not a molecular test)",
            },
            "method": {
                "coding": [
                    coding(
                        c.FHIR_LOCAL,
                        "AI-HE-WSI",
                        "AI estimate from H&E whole-slide image morphology",
                    )
                ],
                "text": (
                    f"Image-based AI estimate ({result.model.display_name}, backbone "
                    f"{result.model.backbone.describe()}); not a molecular assay"
                ),
            },
            "valueCodeableConcept": {
                "coding": [local_coding(call_code)],
                "text": call_code.meaning,
            },
            "interpretation": [
                {"coding": [coding(c.FHIR_INTERPRETATION, interp_code, interp_display)]}
            ],
            "component": components,
        }
    )


def build_bundle(
    result: CaseResult,
    triage: Triage,
    context: ReportContext,
    ids: OutputIds,
    patient_system: PatientSystem = default_patient_system,
    issued: dt.datetime | None = None,
    supersedes: Supersedes | None = None,
) -> Bundle:
    """The transaction Bundle: Device, Observation and Provenance, conditionally created.

    With ``supersedes`` the Observation amends the earlier result's in place.
    """
    issued = issued or dt.datetime.now(dt.UTC)
    return transaction_bundle(
        ids,
        build_device(result, ids),
        lambda device_url: build_observation(
            result, triage, context, ids, device_url, patient_system, issued, supersedes
        ),
        context,
        "HRD estimation from H&E whole-slide images (IHGAMP)",
        issued,
        supersedes,
    )
