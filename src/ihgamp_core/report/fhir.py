"""FHIR R4 resources for a result: Device, Observation, Provenance, in a transaction Bundle.

Built and validated with ``fhir.resources``' R4B models (R4B equals R4 4.0.1 for these
resources). The Bundle uses conditional create (``ifNoneExist``) on stable identifiers,
so posting it again never duplicates anything:

* Device: ``identifier=urn:ihgamp:device|<model digest>``
* Observation: ``identifier=urn:ihgamp:observation|<result key>``
* Provenance: ``_tag=urn:ihgamp:provenance|<result key>``

The Observation is marked ``meta.security = AIAST`` (AI asserted), names the patient by
identifier (Patient ID and its issuer from the DICOM), and is ``derivedFrom`` the
ImagingStudy identified by its Study Instance UID (``urn:dicom:uid``).

A server that stores these resources under their own ids (the gateway's read-only FHIR
endpoint) serves them through :func:`resolved_resources`: the Bundle's ``urn:uuid``
references become ``Device/<id>`` and ``Observation/<id>``, and the references to the
ImagingStudy gain ``ImagingStudy/<Study Instance UID>`` (:func:`build_imaging_study`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

from . import codes as c
from .context import OutputIds, ReportContext, Supersedes

__all__ = [
    "DEVICE_SYSTEM",
    "OBSERVATION_SYSTEM",
    "PROVENANCE_TAG_SYSTEM",
    "build_imaging_study",
    "coded_component",
    "coding",
    "default_patient_system",
    "resolved_resources",
    "device_resource",
    "local_coding",
    "observation_frame",
    "quantity",
    "quantity_component",
    "transaction_bundle",
]

DEVICE_SYSTEM = "urn:ihgamp:device"
OBSERVATION_SYSTEM = "urn:ihgamp:observation"
PROVENANCE_TAG_SYSTEM = "urn:ihgamp:provenance"
DICOM_UID_SYSTEM = "urn:dicom:uid"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

PatientSystem = Callable[[str | None], str]


def default_patient_system(issuer: str | None) -> str:
    """Identifier system for a DICOM Issuer of Patient ID (configure real URIs per site)."""
    return f"urn:ihgamp:issuer:{issuer}" if issuer else "urn:ihgamp:patient-id"


def _uuid(ids: OutputIds, kind: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'urn:ihgamp:{kind}:{ids.key}')}"


def coding(system: str, code: str, display: str) -> dict[str, str]:
    """A FHIR Coding."""
    return {"system": system, "code": code, "display": display}


def local_coding(code: Any) -> dict[str, str]:
    """A Coding in the local code system from a pydicom Code of ``99IHGAMP``."""
    return coding(c.FHIR_LOCAL, code.value, code.meaning)


def device_resource(
    ids: OutputIds,
    display_name: str,
    model_number: str,
    type_text: str,
    version: str,
    properties: Sequence[tuple[str, str]],
    note: str,
) -> Device:
    """A model as a FHIR Device (name, version, properties, intended use as a note)."""
    return Device.model_validate(
        {
            "resourceType": "Device",
            "identifier": [{"system": DEVICE_SYSTEM, "value": ids.device_identifier}],
            "status": "active",
            "manufacturer": "IHGAMP pathology gateway",
            "deviceName": [{"name": display_name, "type": "model-name"}],
            "modelNumber": model_number,
            "type": {"text": type_text},
            "version": [{"value": version}],
            "property": [
                {"type": {"text": name}, "valueCode": [{"text": value}]}
                for name, value in properties
            ],
            "note": [{"text": note}],
        }
    )


def observation_frame(
    ids: OutputIds,
    context: ReportContext,
    device_ref: str,
    device_display: str,
    effective: str,
    notes: Sequence[str],
    patient_system: PatientSystem,
    issued: dt.datetime,
    supersedes: Supersedes | None = None,
) -> dict[str, Any]:
    """The parts every analysis' Observation shares.

    AIAST security label, identifier, status, categories (laboratory, imaging), the
    patient by identifier, times, the device, the notes and ``derivedFrom`` the
    ImagingStudy. The caller adds ``code``, ``method``, the value and the components.
    With ``supersedes`` the identifier of the replaced result comes first and the status
    is ``amended``.

    Raises
    ------
    ValueError
        If the source study has no Patient ID (a result needs a subject).
    """
    patient_id = context.patient_id
    if not patient_id:
        raise ValueError("the study has no Patient ID; the Observation needs a subject")
    return {
        "resourceType": "Observation",
        "meta": {"security": [coding(c.V3_OBSERVATION_VALUE, *c.V3_AIAST)]},
        "identifier": [
            {"system": OBSERVATION_SYSTEM, "value": value}
            for value in dict.fromkeys(
                [
                    *([supersedes.observation_identifier] if supersedes else []),
                    ids.observation_identifier,
                ]
            )
        ],
        "status": "amended" if supersedes is not None else "final",
        "category": [
            {"coding": [coding(OBSERVATION_CATEGORY, "laboratory", "Laboratory")]},
            {"coding": [coding(OBSERVATION_CATEGORY, "imaging", "Imaging")]},
        ],
        "subject": {
            "type": "Patient",
            "identifier": {
                "system": patient_system(context.issuer_of_patient_id),
                "value": patient_id,
            },
        },
        "effectiveDateTime": effective,
        "issued": issued.isoformat(timespec="seconds"),
        "device": {"reference": device_ref, "display": device_display},
        "note": [{"text": text} for text in notes],
        "derivedFrom": [
            {
                "type": "ImagingStudy",
                "identifier": {
                    "system": DICOM_UID_SYSTEM,
                    "value": f"urn:oid:{context.study_uid}",
                },
                "display": f"DICOM study (SR {ids.sr_sop_uid})",
            }
        ],
    }


def quantity(value: float, code: str, unit: str) -> dict[str, Any]:
    """A UCUM Quantity rounded to 6 decimals."""
    return {"value": round(float(value), 6), "unit": unit, "system": UCUM, "code": code}


def quantity_component(concept: Any, value: float, code: str, unit: str) -> dict[str, Any]:
    """An Observation component: a local concept with a UCUM quantity."""
    return {
        "code": {"coding": [local_coding(concept)]},
        "valueQuantity": quantity(value, code, unit),
    }


def coded_component(concept: Any, answer: Any, text: str | None = None) -> dict[str, Any]:
    """An Observation component: a local concept with a local coded answer (and its text)."""
    value: dict[str, Any] = {"coding": [local_coding(answer)]}
    if text is not None:
        value["text"] = text
    return {"code": {"coding": [local_coding(concept)]}, "valueCodeableConcept": value}


def transaction_bundle(
    ids: OutputIds,
    device: Device,
    observation_for: Callable[[str], Observation],
    context: ReportContext,
    activity: str,
    issued: dt.datetime,
    supersedes: Supersedes | None = None,
) -> Bundle:
    """Device, Observation and Provenance in a transaction Bundle, conditionally created.

    A result that supersedes an earlier one updates that Observation in place
    (conditional ``PUT Observation?identifier=...`` on the earlier identifier), so the
    EHR holds one Observation, ``amended``, with the new values.

    Parameters
    ----------
    ids : OutputIds
        Stable identifiers (the Bundle's full URLs derive from ``ids.key``).
    device : Device
        The model.
    observation_for : callable
        Builds the Observation given the Device's full URL.
    context : ReportContext
        Source headers (the ImagingStudy).
    activity : str
        What the Provenance records as the activity.
    issued : datetime
        Time recorded in the Provenance.
    supersedes : Supersedes, optional
        The earlier result this one replaces.
    """
    device_url, obs_url, prov_url = (_uuid(ids, k) for k in ("device", "observation", "prov"))
    observation = observation_for(device_url)
    provenance = Provenance.model_validate(
        {
            "resourceType": "Provenance",
            "meta": {
                "tag": [{"system": PROVENANCE_TAG_SYSTEM, "code": ids.observation_identifier}]
            },
            "target": [{"reference": obs_url}],
            "recorded": issued.isoformat(timespec="seconds"),
            "activity": {"text": activity},
            "agent": [
                {
                    "type": {
                        "coding": [
                            coding(
                                "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "performer",
                                "Performer",
                            )
                        ]
                    },
                    "who": {"reference": device_url},
                }
            ],
            "entity": [
                {
                    "role": "source",
                    "what": {
                        "type": "ImagingStudy",
                        "identifier": {
                            "system": DICOM_UID_SYSTEM,
                            "value": f"urn:oid:{context.study_uid}",
                        },
                    },
                }
            ],
        }
    )

    def create(kind: str, condition: str) -> dict[str, str]:
        return {"method": "POST", "url": kind, "ifNoneExist": condition}

    observation_request = create(
        "Observation", f"identifier={OBSERVATION_SYSTEM}|{ids.observation_identifier}"
    )
    if supersedes is not None:
        observation_request = {
            "method": "PUT",
            "url": (
                f"Observation?identifier={OBSERVATION_SYSTEM}|{supersedes.observation_identifier}"
            ),
        }
    entries = [
        (
            device_url,
            device,
            create("Device", f"identifier={DEVICE_SYSTEM}|{ids.device_identifier}"),
        ),
        (obs_url, observation, observation_request),
        (
            prov_url,
            provenance,
            create("Provenance", f"_tag={PROVENANCE_TAG_SYSTEM}|{ids.observation_identifier}"),
        ),
    ]
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": url,
                    "resource": resource.model_dump(mode="json", exclude_none=True),
                    "request": request,
                }
                for url, resource, request in entries
            ],
        }
    )


def build_imaging_study(
    context: ReportContext, patient_system: PatientSystem = default_patient_system
) -> ImagingStudy:
    """The scored slides' study as a FHIR ImagingStudy (id: the Study Instance UID).

    Only what the result needs to point at: the study and its slide series, the patient
    by identifier. The hospital's own ImagingStudy (from its PACS) carries the same
    ``urn:dicom:uid`` identifier.

    Raises
    ------
    ValueError
        If the study has no Patient ID (an ImagingStudy needs a subject).
    """
    patient_id = context.patient_id
    if not patient_id:
        raise ValueError("the study has no Patient ID; the ImagingStudy needs a subject")
    slide_microscopy = coding(DICOM_DCM, "SM", "Slide Microscopy")
    series = [
        {
            "uid": slide.series_uid,
            "modality": slide_microscopy,
            "numberOfInstances": len(slide.datasets),
        }
        for slide in context.slides
    ]
    return ImagingStudy.model_validate(
        {
            "resourceType": "ImagingStudy",
            "id": context.study_uid,
            "identifier": [
                {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{context.study_uid}"},
                *_accession_identifier(context.accession_number),
            ],
            "status": "available",
            "modality": [slide_microscopy],
            "subject": {
                "type": "Patient",
                "identifier": {
                    "system": patient_system(context.issuer_of_patient_id),
                    "value": patient_id,
                },
            },
            "numberOfSeries": len(series),
            "numberOfInstances": sum(s["numberOfInstances"] for s in series),
            "series": series,
        }
    )


def _accession_identifier(accession: str | None) -> list[dict[str, Any]]:
    """The study's Accession Number as an ImagingStudy identifier (type ACSN), in full."""
    if not accession:
        return []
    acsn = coding("http://terminology.hl7.org/CodeSystem/v2-0203", "ACSN", "Accession ID")
    return [{"type": {"coding": [acsn]}, "value": accession}]


def resolved_resources(
    bundle: Bundle,
    ids: OutputIds,
    imaging_study: ImagingStudy,
    observation_id: str | None = None,
) -> list[dict[str, Any]]:
    """The Bundle's resources as a server stores them: with ids and literal references.

    Device gets ``ids.device_identifier`` as its id, Provenance
    ``ids.observation_identifier``, Observation ``observation_id`` (default: the same;
    a superseding result passes the first result's, so the Observation is amended in
    place); every ``urn:uuid`` reference becomes the relative
    ``Type/id``, and each reference to the ImagingStudy by identifier gains
    ``ImagingStudy/<id>``. Returns Device, Observation, Provenance and ImagingStudy as JSON
    dictionaries, each validated by ``fhir.resources``.
    """
    local_ids = {
        "Device": ids.device_identifier,
        "Observation": observation_id or ids.observation_identifier,
        "Provenance": ids.observation_identifier,
    }
    study_identifier = f"urn:oid:{imaging_study.id}"
    references: dict[str, str] = {}
    resources: list[dict[str, Any]] = []
    for entry in bundle.entry or []:
        if entry.resource is None:
            continue
        resource = entry.resource.model_dump(mode="json", exclude_none=True)
        kind = resource["resourceType"]
        resource["id"] = local_ids[kind]
        references[str(entry.fullUrl)] = f"{kind}/{local_ids[kind]}"
        resources.append(resource)
    study_reference = f"ImagingStudy/{imaging_study.id}"

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            node = {key: rewrite(value) for key, value in node.items()}
            if node.get("reference") in references:
                node["reference"] = references[node["reference"]]
            identifier = node.get("identifier")
            if (
                node.get("type") == "ImagingStudy"
                and isinstance(identifier, dict)
                and identifier.get("value") == study_identifier
            ):
                node["reference"] = study_reference
            return node
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    models: dict[str, Any] = {
        "Device": Device,
        "Observation": Observation,
        "Provenance": Provenance,
    }
    out = []
    for resource in resources:
        resolved = rewrite(resource)
        models[resolved["resourceType"]].model_validate(resolved)
        out.append(resolved)
    out.append(imaging_study.model_dump(mode="json", exclude_none=True))
    return out
