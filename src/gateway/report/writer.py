"""Turning an analysis result into its reports, in the outbox, and queuing their deliveries.

One method for every analysis (:meth:`ReportWriter.write`): the analysis builds its
reports (``analysis.report``), the writer names the predecessor, writes the files, keeps
the FHIR resources, queues the deliveries and writes ``result.json`` last.

Each analysis request has its own folder in the study's outbox folder,
``<study>/<job folder>/`` (:func:`~gateway.outbox.job_folder` of its job key: ``hrd``,
``her2``, ``her2-A1``)::

    result.json            the analysis' result document + output identifiers (for people)
    sr.dcm                 DICOM SR (TID 1500)
    heatmap-<n>.dcm        map object per slide (Parametric Map, Segmentation)
    heatmap-<n>.png        the map over a thumbnail, for people
    fhir-bundle.json       FHIR R4 transaction Bundle (Device, Observation, Provenance)

What was issued is recorded with the result's catalog row (its output manifest); readers
use that, never these files.

The FHIR endpoint's copies (Observation, Device, Provenance, ImagingStudy, with literal
references between them) are kept in the catalog.

Every file is written atomically. Deliveries reference the files, so a resend sends the
same SOP Instance UIDs and FHIR identifiers.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from pydicom.filebase import DicomBytesIO
from pydicom.uid import Comprehensive3DSRStorage

from ihgamp_core.analysis import Analysis, AnalysisReport, ReportOptions
from ihgamp_core.errors import ReportBuildError
from ihgamp_core.report import (
    ReportContext,
    Supersedes,
)
from ihgamp_core.report.fhir import DEVICE_SYSTEM, build_imaging_study, resolved_resources

from ..catalog import AnalysisStore, Catalog, ResultManifest
from ..catalog.deliveries import DeliveryStore
from ..catalog.fhir_resources import FhirResourceStore
from ..catalog.observations import ObservationStore
from ..config import Settings
from ..dispatch.destinations import KINDS, Payload
from ..errors import ResultUnchangedError, ResultWithheldError
from ..outbox import Outbox, job_folder
from .hl7v2 import build_oru_r01

__all__ = ["ReportWriter", "Written"]

logger = logging.getLogger(__name__)

COMPREHENSIVE_3D_SR = str(Comprehensive3DSRStorage)


def _chain_identifier(own: str, supersedes: Supersedes | None) -> str:
    """The identifier downstream systems know the study's Observation by."""
    return supersedes.observation_identifier if supersedes else own


def _supersedes_dict(supersedes: Supersedes) -> dict[str, Any]:
    """What ``result.json`` says of the result it replaces."""
    return {
        "sr_sop_instance_uid": supersedes.sr_sop_uid,
        "observation_identifier": supersedes.observation_identifier,
        "created": supersedes.created,
        "slides": supersedes.slides,
    }


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


@contextmanager
def _building() -> Iterator[None]:
    """Report builders' errors are permanent (the same headers fail the same way).

    The message keeps what went wrong, with quoted values masked (they may be patient
    data copied from the headers).

    Raises
    ------
    ReportBuildError
        In place of the builders' ``ValueError``, ``TypeError``, ``AttributeError``,
        ``KeyError`` and ``IndexError``.
    """
    try:
        yield
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if not isinstance(exc, AttributeError | KeyError):  # those quote names, not values
            text = _QUOTED.sub("'...'", text)
        raise ReportBuildError(
            f"the reports cannot be built from this study's headers ({type(exc).__name__}: "
            f"{text[:300]}); not retried"
        ) from exc


def _dicom_bytes(dataset: Any) -> bytes:
    buffer = DicomBytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return bytes(buffer.getvalue())


class Written(NamedTuple):
    """What :meth:`ReportWriter.write` issued."""

    report: AnalysisReport
    path: Path
    """The result's ``result.json`` (an export for people)."""
    manifest: ResultManifest
    """What it issued, for the result's catalog row."""


class ReportWriter:
    """Builds and stores reports; creates one delivery per configured destination.

    Parameters
    ----------
    catalog : Catalog
        Catalog (deliveries and observations tables).
    outbox : Outbox
        The outbox.
    settings : Settings
        Triage, FHIR identifier systems, destinations, retry policy.
    """

    def __init__(self, catalog: Catalog, outbox: Outbox, settings: Settings) -> None:
        self.catalog = catalog
        self.outbox = outbox
        self.settings = settings
        self.deliveries = DeliveryStore(catalog)
        self.observations = ObservationStore(catalog)
        self.resources = FhirResourceStore(catalog)
        self.analyses = AnalysisStore(catalog)

    def patient_system(self, issuer: str | None) -> str:
        """FHIR identifier system for a DICOM Issuer of Patient ID."""
        systems = self.settings.fhir.patient_id_systems
        if issuer and issuer in systems:
            return systems[issuer]
        if issuer:
            return f"urn:ihgamp:issuer:{issuer}"
        return self.settings.fhir.default_patient_id_system

    def histology(self, context: ReportContext) -> str | None:
        """Histology from the order mapping, else from the headers, else the default."""
        accession = context.accession_number
        mapped = self.settings.triage.histology_by_accession.get(accession or "")
        return mapped or context.histology or self.settings.triage.default_histology

    def write(
        self,
        study_uid: str,
        job_key: str,
        analysis: Analysis[Any],
        result: Any,
        files_by_series: Mapping[str, list[str]],
        thumbnails: Mapping[str, NDArray[np.uint8]] | None = None,
    ) -> Written:
        """Report one analysis request's result into its outbox folder, every analysis alike.

        ``files_by_series`` holds the request's slides in the request's order (reference
        slide first). The files go to the request's folder in the study's
        (:func:`~gateway.outbox.job_folder` of ``job_key``). A result that replaces an earlier one
        of the same request (another key) names it: SR predecessor, Observation amended in
        place. Everything is written before ``result.json``, whose key then means "issued".

        Returns
        -------
        Written
            The report, the path of its ``result.json`` and its output manifest (which the
            caller records with the result's row).

        Raises
        ------
        ResultUnchangedError
            The request's result already issued has the same key: it stands.
        ResultWithheldError, MixedPatientsError, ReportBuildError
            No result may be, or can be, issued from these inputs.
        """
        context = ReportContext.from_files(files_by_series)
        context = replace(context, histology_override=self.histology(context))
        patterns = self.settings.triage.not_validated_patterns
        options = ReportOptions(thumbnails or {}, self.patient_system, patterns)
        with _building():
            report = analysis.report(result, context, options)
        supersedes = self.predecessor(study_uid, report.key, context, job_key)
        if supersedes is not None:
            options = replace(options, supersedes=supersedes)
            with _building():
                report = analysis.report(result, context, options)
            logger.info(
                "result supersedes an earlier one",
                extra={
                    "study_uid": study_uid,
                    "job": job_key,
                    "previous_sr": supersedes.sr_sop_uid,
                },
            )
        folder = job_folder(job_key)

        def at(name: str) -> str:
            return f"{folder}/{name}"

        names: list[str] = ["sr.dcm"]
        self.outbox.write_file(study_uid, at("sr.dcm"), _dicom_bytes(report.sr))
        dicom_files = ["sr.dcm"]
        for index, heatmap in enumerate(report.heatmaps, 1):
            name = f"heatmap-{index}.dcm"
            self.outbox.write_file(study_uid, at(name), _dicom_bytes(heatmap.dataset))
            names.append(name)
            dicom_files.append(name)
            if heatmap.png is not None:
                png = f"heatmap-{index}.png"
                self.outbox.write_file(study_uid, at(png), heatmap.png)
                names.append(png)
        observation_id = _chain_identifier(report.observation_identifier, supersedes)
        if report.bundle is not None:
            bundle = report.bundle.model_dump(mode="json", exclude_none=True)
            data = json.dumps(bundle, indent=1).encode()
            self.outbox.write_file(study_uid, at("fhir-bundle.json"), data)
            names.append("fhir-bundle.json")
            self._store_fhir(
                study_uid,
                report.bundle,
                report.ids,
                report.observation_code,
                context,
                observation_id,
            )
        hl7 = self._write_hl7v2(study_uid, at, report, context, supersedes is not None)
        names += hl7.values()
        for note in report.notes:
            logger.warning(
                "report incomplete", extra={"study_uid": study_uid, "job": job_key, "reason": note}
            )
        document = dict(report.document)
        document["job_key"] = job_key
        document["outputs"] = {
            **document.get("outputs", {}),
            "fhir_observation_identifier": observation_id,
            "files": names,
            "folder": folder,
        }
        if supersedes is not None:
            document["supersedes"] = _supersedes_dict(supersedes)
        by_payload = {Payload.DICOM: [at(f) for f in dicom_files]}
        if report.bundle is not None:
            by_payload[Payload.FHIR_BUNDLE] = [at("fhir-bundle.json")]
        by_destination = {name: [at(f)] for name, f in hl7.items()}
        self._queue_deliveries(study_uid, report.key, by_payload, by_destination)
        path = self.outbox.write_file(
            study_uid,
            at("result.json"),
            (json.dumps(document, indent=2, default=str) + "\n").encode(),
        )
        return Written(report, path, ResultManifest.from_document(document))

    def predecessor(
        self, study_uid: str, key: str, context: ReportContext, job_key: str
    ) -> Supersedes | None:
        """The earlier result of the same request, when a result with another key replaces it.

        The same inputs give the same key (a re-score of the same slides with the same
        model): that is the same result again, not a replacement, and it is not issued
        again (its SOP Instance UIDs were sent with the earlier content). The earlier
        result is the request's row and its output manifest (never its files).

        Raises
        ------
        ResultUnchangedError
            The earlier result has ``key``: it stands.
        ResultWithheldError
            The earlier result's Observation names another patient than ``context``: a
            result never amends another patient's.
        """
        row = self.analyses.result(study_uid, job_key)
        if row is None:
            return None
        earlier = row.outputs
        if earlier is None:
            logger.warning(
                "earlier result has no recorded outputs; the new one cannot name its predecessor",
                extra={"study_uid": study_uid, "job": job_key},
            )
            return None
        if earlier.key == key:
            raise ResultUnchangedError(
                f"the result equals the one issued ({row.result_path})", Path(row.result_path)
            )
        self._same_subject(earlier.chain_identifier, context)
        return Supersedes(
            observation_identifier=earlier.chain_identifier,
            sr_study_uid=study_uid,
            sr_series_uid=earlier.sr_series_uid,
            sr_sop_uid=earlier.sr_sop_uid,
            sr_sop_class_uid=COMPREHENSIVE_3D_SR,
            created=earlier.created,
            slides=earlier.slides,
        )

    def _same_subject(self, chain: str, context: ReportContext) -> None:
        """Refuse to supersede a result whose Observation names another patient."""
        previous = self.observations.get(chain)
        if previous is None:
            return
        subject = previous.get("subject", {}).get("identifier", {})
        now = {
            "system": self.patient_system(context.issuer_of_patient_id),
            "value": context.patient_id,
        }
        if (subject.get("system"), subject.get("value")) != (now["system"], now["value"]):
            raise ResultWithheldError(
                "the new result's patient differs from the patient of the result it would "
                "replace; nothing was issued: review the study"
            )

    def _store_fhir(
        self,
        study_uid: str,
        bundle: Any,
        ids: Any,
        code: tuple[str, str],
        context: ReportContext,
        observation_id: str,
    ) -> None:
        """Keep the resources the gateway's FHIR endpoint serves, references resolved.

        The Observation is stored under ``observation_id``: the first result's identifier
        when this result supersedes it, so the endpoint amends the same resource.
        """
        study = build_imaging_study(context, self.patient_system)
        for resource in resolved_resources(bundle, ids, study, observation_id):
            kind = resource["resourceType"]
            if kind == "Observation":
                self.observations.put(study_uid, resource, code)
            elif kind == "Device":
                key = f"{DEVICE_SYSTEM}|{ids.device_identifier}"
                self.resources.put(resource, key)
            elif kind == "Provenance":
                key = f"Observation/{observation_id}"
                self.resources.put(resource, key, study_uid)
            else:
                self.resources.put(resource, study_uid, study_uid)

    def _write_hl7v2(
        self,
        study_uid: str,
        at: Callable[[str], str],
        report: AnalysisReport,
        context: ReportContext,
        corrected: bool,
    ) -> dict[str, str]:
        """One ``ORU^R01`` per HL7 v2 destination; returns its file name by destination.

        A study without a Patient ID gets none (PID-3 is required): the log says so.
        """
        nodes = self.settings.dispatch.hl7v2
        if not nodes:
            return {}
        if not context.patient_id:
            logger.warning(
                "report incomplete",
                extra={"study_uid": study_uid, "reason": "no HL7 v2 result: no Patient ID"},
            )
            return {}
        now = dt.datetime.now(dt.UTC)
        files = {}
        for node in nodes:
            name = f"oru-r01-{_slug(node.name)}.hl7"
            with _building():
                message = build_oru_r01(report, context, node, corrected, now)
            self.outbox.write_file(study_uid, at(name), message)
            files[node.name] = name
        return files

    def _queue_deliveries(
        self,
        study_uid: str,
        key: str,
        by_payload: Mapping[Payload, list[str]],
        by_destination: Mapping[str, list[str]],
    ) -> None:
        """One delivery per destination that takes something of this result.

        A destination gets the files built for it (``by_destination``: an ``ORU^R01``),
        else its kind's payload; none when there is neither (no Bundle, no ``ORU^R01``
        for a study without a Patient ID).
        """
        d = self.settings.dispatch
        targets = []
        for kind, node in d.nodes():
            files = by_destination.get(node.name) or by_payload.get(KINDS[kind].payload)
            if files:
                targets.append((node.name, kind, files))
        for name, kind, files in targets:
            self.deliveries.create(study_uid, key, name, kind, files, d.max_attempts)
        if targets:
            names = [t[0] for t in targets]
            logger.info("deliveries queued", extra={"study_uid": study_uid, "destinations": names})


def _slug(name: str) -> str:
    """A destination name as part of a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)
