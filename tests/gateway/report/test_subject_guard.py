"""The report writer never amends another patient's result (the second guard, at report time)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from gateway.catalog import AnalysisStore, Catalog, ResultManifest
from gateway.catalog.observations import ObservationStore
from gateway.errors import ResultWithheldError
from gateway.outbox import Outbox
from gateway.report.writer import ReportWriter
from ihgamp_core.errors import MixedPatientsError
from ihgamp_core.report import ReportContext
from ihgamp_core.report.context import SlideHeaders
from support.gateway import make_settings

pytestmark = pytest.mark.integration

STUDY = "1.2.826.0.1.3680043.8.498.77"


def _context(*patients: tuple[str, str | None]) -> ReportContext:
    slides = []
    for index, (patient_id, birth_date) in enumerate(patients):
        ds = Dataset()
        ds.StudyInstanceUID = STUDY
        ds.PatientID = patient_id
        ds.IssuerOfPatientID = "HOSP"
        if birth_date:
            ds.PatientBirthDate = birth_date
        slides.append(SlideHeaders(f"1.2.3.{index}", (ds,)))
    return ReportContext(tuple(slides))


def _writer_with_earlier_result(tmp_path: Path, subject: str) -> ReportWriter:
    settings = make_settings(tmp_path)
    catalog = Catalog(settings.catalog.url)
    catalog.hold(STUDY, "test")
    writer = ReportWriter(catalog, Outbox(settings.storage.outbox_dir), settings)
    earlier = ResultManifest(
        key="earlier-key",
        folder="her2",
        files=("sr.dcm",),
        sr_series_uid="1.2.3.9",
        sr_sop_uid="1.2.3.9.1",
        observation_identifier="own-2",
        chain_identifier="chain-1",
        created="2026-12-01",
        slides=1,
    )
    AnalysisStore(catalog).record(
        STUDY, "her2", "her2", "/gone/result.json", "2+", 0.5, "dual", "m", True, None, earlier
    )
    system = writer.patient_system("HOSP")
    resource = {
        "resourceType": "Observation",
        "id": "chain-1",
        "subject": {"identifier": {"system": system, "value": subject}},
    }
    ObservationStore(catalog).put(STUDY, resource, ("http://loinc.org", "x"))
    return writer


def test_a_result_of_another_patient_is_not_superseded(tmp_path: Path) -> None:
    writer = _writer_with_earlier_result(tmp_path, subject="PID-B")
    with pytest.raises(ResultWithheldError, match="patient differs"):
        writer.predecessor(STUDY, "new-key", _context(("PID-A", None)), "her2")


def test_the_same_patients_result_is_superseded(tmp_path: Path) -> None:
    writer = _writer_with_earlier_result(tmp_path, subject="PID-A")
    supersedes = writer.predecessor(STUDY, "new-key", _context(("PID-A", None)), "her2")
    assert supersedes is not None and supersedes.observation_identifier == "chain-1"


@pytest.mark.parametrize(
    "patients",
    [(("PID-A", None), ("PID-B", None)), (("PID-A", "19600101"), ("PID-A", "19700101"))],
    ids=["patient-id", "birth-date"],
)
def test_headers_of_two_patients_make_no_report_context(
    patients: tuple[tuple[str, str | None], ...],
) -> None:
    with pytest.raises(MixedPatientsError, match="more than one patient"):
        _context(*patients)
    assert len(_context(("PID-A", "19600101"), ("PID-A", None)).slides) == 2
