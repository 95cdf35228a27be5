"""A study that arrives in two parts across a gateway restart, with real peers.

Either the gateway waits for the second part (it came soon after the restart: downtime
is not quiet time), or the first part was already scored and delivered, and the result
from the whole study replaces it on both sides: a new SR that names its predecessor in
the PACS (Orthanc), and the same Observation, ``amended``, in the EHR (a FHIR server).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from gateway.catalog import AnalysisStore, Catalog, StudyState
from ihgamp_core.synthetic.samples import SampleCase
from support.fhir_peer import FhirPeer, fhir_server
from support.gateway import GatewayProcess, free_port, send, settings_dict, wait_for, write_toml
from support.orthanc import Orthanc, orthanc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OBSERVATION_SYSTEM = "urn:ihgamp:observation"


@pytest.fixture(scope="module")
def peers() -> Iterator[tuple[Orthanc, FhirPeer]]:
    with orthanc() as pacs, fhir_server() as ehr:
        yield pacs, ehr


def _gateway(
    tmp_path: Path, pacs: Orthanc, ehr: FhirPeer, **sections: dict[str, Any]
) -> tuple[Path, int, str]:
    port = free_port()
    data = settings_dict(
        tmp_path,
        dicom={"port": port},
        **sections,
        dispatch={
            "dicom": [
                {"name": "pacs", "ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port}
            ],
            "fhir": [{"name": "ehr", "url": ehr.url}],
            "backoff_s": 0.5,
            "poll_interval_s": 0.2,
        },
    )
    return write_toml(tmp_path / "gateway.toml", data), port, data["catalog"]["url"]


def _result(url: str, uid: str) -> dict[str, Any] | None:
    catalog = Catalog(url)
    try:
        study = catalog.study(uid)
        row = AnalysisStore(catalog).result(uid, "hrd")
    finally:
        catalog.close()
    if study is None or study.state != StudyState.SCORED or row is None:
        return None
    return dict(json.loads(Path(row.result_path).read_text()))


def _series_files(samples_root: Path, case: SampleCase) -> list[list[Path]]:
    folders = sorted(p for p in (samples_root / "dicom" / case.case_id).iterdir() if p.is_dir())
    assert len(folders) == 2, "the case must have two slides"
    return [sorted(f.glob("*.dcm")) for f in folders]


def test_a_result_from_partial_input_is_superseded_in_the_pacs_and_the_ehr(
    tmp_path: Path,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
    peers: tuple[Orthanc, FhirPeer],
) -> None:
    pacs, ehr = peers
    case = sample_cases["DEMO-002"]
    uid = case.identity["study_instance_uid"]
    first_part, second_part = _series_files(samples_root, case)
    config, port, url = _gateway(tmp_path, pacs, ehr)
    log = tmp_path / "gateway.log"

    gw = GatewayProcess(config, log).start()
    try:
        gw.wait_listening(port)
        assert send(port, first_part) == [0] * len(first_part)
        first = wait_for(lambda: _result(url, uid), timeout=180)
        first_sr = first["outputs"]["sr_sop_instance_uid"]
        chain = first["outputs"]["fhir_observation_identifier"]
        wait_for(lambda: pacs.find_instance(first_sr), timeout=60)
        wait_for(lambda: ehr.search("Observation", f"{OBSERVATION_SYSTEM}|{chain}"), timeout=60)
    finally:
        assert gw.stop() == 0

    gw = GatewayProcess(config, log).start()  # the rest of the study comes after a restart
    try:
        gw.wait_listening(port)
        assert send(port, second_part) == [0] * len(second_part)
        second = wait_for(lambda: (r := _result(url, uid)) and "supersedes" in r and r, timeout=180)
        second_sr = second["outputs"]["sr_sop_instance_uid"]
        assert second_sr != first_sr and len(second["slides"]) == 2
        remote = wait_for(lambda: pacs.find_instance(second_sr), timeout=60)

        def amended() -> list[dict[str, Any]]:
            found = ehr.search("Observation", f"{OBSERVATION_SYSTEM}|{chain}")
            return [o for o in found if o.get("status") == "amended"]

        (observation,) = wait_for(amended, timeout=60)
    finally:
        assert gw.stop() == 0

    # PACS: the new SR names the partial one as its predecessor.
    sr_file = tmp_path / "second-sr.dcm"
    sr_file.write_bytes(pacs.instance_file(remote))
    sr = pydicom.dcmread(sr_file)
    (study_ref,) = sr.PredecessorDocumentsSequence
    assert study_ref.StudyInstanceUID == uid
    referenced = study_ref.ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert referenced.ReferencedSOPInstanceUID == first_sr
    comments = [str(item.get("TextValue", "")) for item in _walk(sr.ContentSequence)]
    assert any("replaces an earlier one" in text for text in comments)
    # EHR: one Observation for the study, amended in place, saying why.
    assert len(ehr.search("Observation", f"{OBSERVATION_SYSTEM}|{chain}")) == 1
    assert {i["value"] for i in observation["identifier"]} == {  # type: ignore[index]
        chain,
        second["outputs"]["observation_identifier"],
    }
    notes = " ".join(n["text"] for n in observation["note"])  # type: ignore[index]
    assert "replaces an earlier one" in notes and "from 1 slide" in notes
    assert "replaces an earlier one" in second["triage"]["text"]


def _walk(items: Any) -> Iterator[Any]:
    for item in items:
        yield item
        if "ContentSequence" in item:
            yield from _walk(item.ContentSequence)


def test_the_rest_of_a_study_arriving_right_after_an_outage_is_scored_once(
    tmp_path: Path,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
    peers: tuple[Orthanc, FhirPeer],
) -> None:
    pacs, ehr = peers
    case = sample_cases["DEMO-002"]
    uid = case.identity["study_instance_uid"]
    first_part, second_part = _series_files(samples_root, case)
    timers = {"series_stable_s": 3, "study_stable_s": 6, "poll_interval_s": 0.2}
    config, port, url = _gateway(tmp_path, pacs, ehr, completion=timers)
    log = tmp_path / "gateway.log"
    gw = GatewayProcess(config, log).start()
    gw.wait_listening(port)
    assert send(port, first_part) == [0] * len(first_part)
    gw.kill()  # an outage before the study was complete
    time.sleep(8)  # longer than study_stable_s: the clock ran while we were down
    gw = GatewayProcess(config, log).start()
    try:
        gw.wait_listening(port)
        assert send(port, second_part) == [0] * len(second_part)
        result = wait_for(lambda: _result(url, uid), timeout=180)
    finally:
        assert gw.stop() == 0
    assert len(result["slides"]) == 2 and "supersedes" not in result
    assert log.read_text().count("study complete") == 1


def _other_patient(files: list[Path], out: Path) -> list[Path]:
    """The same series under the same study, but of another patient (a reused study UID)."""
    out.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.PatientID = "OTHER-PATIENT-0815"
        ds.PatientName = "OTHER^PATIENT"
        copies.append(out / path.name)
        ds.save_as(copies[-1], enforce_file_format=True)
    return copies


def test_another_patients_slides_never_amend_a_final_result(
    tmp_path: Path,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
    peers: tuple[Orthanc, FhirPeer],
) -> None:
    """The red-team finding, end to end: refused at intake; and where intake could not
    tell (a study recorded before identities were kept), withheld at report time."""
    from sqlalchemy import update

    from gateway.catalog import JobStore
    from gateway.catalog.schema import Study
    from support.studies import relabel

    pacs, ehr = peers
    case = sample_cases["DEMO-002"]
    # A copy under new UIDs: the other tests of this module share the peers.
    uid, copies = relabel(samples_root / "dicom" / case.case_id, tmp_path / "copy")
    by_series: dict[str, list[Path]] = {}
    for path in copies:
        series = str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)
        by_series.setdefault(series, []).append(path)
    first_part, second_part = sorted(by_series.values())
    intruder = _other_patient(second_part, tmp_path / "intruder")
    config, port, url = _gateway(tmp_path, pacs, ehr)
    gw = GatewayProcess(config, tmp_path / "gateway.log").start()
    try:
        gw.wait_listening(port)
        assert send(port, first_part) == [0] * len(first_part)
        first = wait_for(lambda: _result(url, uid), timeout=180)
        chain = first["outputs"]["fhir_observation_identifier"]
        wait_for(lambda: ehr.search("Observation", f"{OBSERVATION_SYSTEM}|{chain}"), timeout=60)

        # 1. At intake: every instance of the other patient is refused; the study stays.
        assert send(port, intruder) == [0xC000] * len(intruder)
        time.sleep(3)  # longer than the completion timers: nothing may have reopened
        catalog = Catalog(url)
        try:
            study = catalog.study(uid)
            assert study is not None and study.state == StudyState.SCORED
            assert len(study.series) == 1
            assert len(JobStore(catalog).jobs()) == 1
            # 2. A study recorded before identities were kept: intake cannot tell ...
            with catalog.session() as s:
                s.execute(update(Study).where(Study.study_uid == uid).values(patient_identity=None))
        finally:
            catalog.close()
        assert send(port, intruder) == [0] * len(intruder)

        def withheld() -> Any:
            catalog = Catalog(url)
            try:
                study = catalog.study(uid)
            finally:
                catalog.close()
            flagged = study is not None and study.review_reason and study.state == "failed"
            return study if flagged else None

        # ... the report step refuses to mix the two patients, and flags the study.
        flagged = wait_for(withheld, timeout=180)
    finally:
        assert gw.stop() == 0
    assert "more than one patient" in str(flagged.review_reason)
    assert flagged.state == StudyState.FAILED
    assert "OTHER-PATIENT" not in (tmp_path / "gateway.log").read_text()  # no PHI in logs
    # Neither the PACS nor the EHR got anything naming the other patient.
    (observation,) = ehr.search("Observation", f"{OBSERVATION_SYSTEM}|{chain}")
    assert observation["status"] == "final"
    assert observation["subject"]["identifier"]["value"] == case.identity["patient_id"]  # type: ignore[index]
    outbox = json.loads((tmp_path / "outbox" / uid / "hrd" / "result.json").read_text())
    assert outbox["outputs"]["sr_sop_instance_uid"] == first["outputs"]["sr_sop_instance_uid"]
