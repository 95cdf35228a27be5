"""Delivering results to real peers: Orthanc (C-STORE, STOW-RS) and a FHIR server process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from gateway.catalog.deliveries import DeliveryStore
from gateway.dispatch.dispatcher import Dispatcher
from ihgamp_core.hrd.engine import Engine
from ihgamp_core.synthetic.samples import SampleCase
from support.fhir_peer import fhir_server
from support.gateway import dataset_bytes, free_port, make_settings
from support.orthanc import Orthanc, orthanc
from support.reports import dispatch_until, make_reported

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def pacs() -> Iterator[Orthanc]:
    with orthanc() as server:
        yield server


def test_sr_and_heatmap_arrive_in_orthanc_by_cstore_and_stow(
    tmp_path: Path,
    engine: Engine,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
    pacs: Orthanc,
) -> None:
    settings = make_settings(
        tmp_path,
        dispatch={
            "dicom": [
                {"name": "pacs", "ae_title": pacs.aet, "host": "127.0.0.1", "port": pacs.dicom_port}
            ],
            "dicomweb": [{"name": "stow", "url": pacs.dicomweb_url}],
        },
    )
    r = make_reported(tmp_path, engine, samples_root, sample_cases["DEMO-001"], settings)
    dispatcher = Dispatcher(r.catalog, r.outbox, settings)
    store = DeliveryStore(r.catalog)
    assert {d.destination for d in store.deliveries()} == {"pacs", "stow"}
    dispatch_until(dispatcher, "pacs", lambda: store.deliveries(states=["delivered"]))
    for name in ("sr.dcm", "heatmap-1.dcm"):
        local = r.folder / name
        uid = str(pydicom.dcmread(local, stop_before_pixels=True).SOPInstanceUID)
        remote = pacs.find_instance(uid)
        assert remote is not None, name
        sent = tmp_path / f"remote-{name}"
        sent.write_bytes(pacs.instance_file(remote))
        assert dataset_bytes(sent) == dataset_bytes(local)
    tags = pacs.get(f"/instances/{pacs.find_instance(r.report.ids.sr_sop_uid)}/simplified-tags")
    assert tags["StudyInstanceUID"] == r.study_uid and tags["Modality"] == "SR"
    # The same objects over STOW-RS: accepted, and Orthanc still holds one copy each.
    before = len(pacs.instances())
    dispatch_until(dispatcher, "stow", lambda: len(store.deliveries(states=["delivered"])) == 2)
    assert len(pacs.instances()) == before
    series = pacs.get(f"/instances/{pacs.find_instance(r.report.ids.sr_sop_uid)}/series")
    assert "AI" in series["MainDicomTags"]["SeriesDescription"]


def test_pacs_down_then_up_delivers_after_retry(
    tmp_path: Path,
    engine: Engine,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> None:
    port = free_port()
    settings = make_settings(
        tmp_path,
        dispatch={
            "dicom": [{"name": "late-pacs", "ae_title": "LATE", "host": "127.0.0.1", "port": port}],
            "backoff_s": 0.5,
            "backoff_max_s": 1,
            "timeout_s": 3,
            "max_attempts": 20,
        },
    )
    r = make_reported(tmp_path, engine, samples_root, sample_cases["DEMO-001"], settings)
    dispatcher = Dispatcher(r.catalog, r.outbox, settings)
    store = DeliveryStore(r.catalog)
    destination = dispatcher.destinations[0]
    assert dispatcher.run_once(destination)
    (pending,) = store.deliveries()
    assert pending.state == "pending" and pending.attempts == 1
    assert "unreachable" in (pending.last_error or "")
    assert not dispatcher.run_once(destination)  # backing off: not due yet
    from support.orthanc import Orthanc as _Orthanc

    server = _Orthanc(free_port(), port, "LATE", tmp_path / "orthanc")
    (tmp_path / "orthanc").mkdir()
    server.start()
    try:
        dispatch_until(dispatcher, "late-pacs", lambda: store.deliveries(states=["delivered"]))
        assert server.find_instance(r.report.ids.sr_sop_uid) is not None
    finally:
        server.stop()


def test_fhir_500_and_timeout_retry_then_dead_letter_then_redispatch(
    tmp_path: Path,
    engine: Engine,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> None:
    with fhir_server() as ehr:
        settings = make_settings(
            tmp_path,
            dispatch={
                "fhir": [{"name": "ehr", "url": ehr.url}],
                "backoff_s": 0.1,
                "backoff_max_s": 0.2,
                "timeout_s": 1,
                "max_attempts": 3,
            },
        )
        r = make_reported(tmp_path, engine, samples_root, sample_cases["DEMO-001"], settings)
        dispatcher = Dispatcher(r.catalog, r.outbox, settings)
        store = DeliveryStore(r.catalog)
        destination = dispatcher.destinations[0]
        ehr.mode("error500")
        dispatcher.run_once(destination)
        (d,) = store.deliveries()
        assert d.state == "pending" and "answered 500" in (d.last_error or "")
        ehr.mode("hang")
        time.sleep(0.25)
        started = time.monotonic()
        dispatcher.run_once(destination)
        assert time.monotonic() - started < 10  # the timeout applies
        (d,) = store.deliveries()
        assert d.attempts == 2 and "unreachable" in (d.last_error or "")
        ehr.mode("error500")
        time.sleep(0.25)
        dispatcher.run_once(destination)
        (d,) = store.deliveries()
        assert d.state == "dead-letter" and d.attempts == 3
        assert not dispatcher.run_once(destination)  # dead letters are not retried
        ehr.mode("ok")
        assert store.redispatch(study_uid=r.study_uid) == 1
        dispatch_until(dispatcher, "ehr", lambda: store.deliveries(states=["delivered"]))
        observations = ehr.search(
            "Observation", f"urn:ihgamp:observation|{r.report.ids.observation_identifier}"
        )
        assert len(observations) == 1
        obs = observations[0]
        assert obs["device"]["reference"].startswith("Device/")  # urn:uuid resolved
        assert obs["subject"]["identifier"]["value"] == "SYN-0001"


def test_fhir_resend_does_not_duplicate(
    tmp_path: Path,
    engine: Engine,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> None:
    with fhir_server() as ehr:
        settings = make_settings(tmp_path, dispatch={"fhir": [{"name": "ehr", "url": ehr.url}]})
        r = make_reported(tmp_path, engine, samples_root, sample_cases["DEMO-001"], settings)
        dispatcher = Dispatcher(r.catalog, r.outbox, settings)
        store = DeliveryStore(r.catalog)
        dispatch_until(dispatcher, "ehr", lambda: store.deliveries(states=["delivered"]))
        first = ehr.counts()
        assert first == {"Device": 1, "Observation": 1, "Provenance": 1}
        assert store.redispatch(include_delivered=True) == 1
        dispatch_until(dispatcher, "ehr", lambda: store.deliveries(states=["delivered"]))
        assert ehr.counts() == first
        bundle = json.loads((r.folder / "fhir-bundle.json").read_text())
        assert all(e["request"]["ifNoneExist"] for e in bundle["entry"])


def test_missing_outbox_file_is_reported(
    tmp_path: Path,
    engine: Engine,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> None:
    settings = make_settings(
        tmp_path,
        dispatch={"dicom": [{"name": "pacs", "ae_title": "X", "host": "127.0.0.1", "port": 1}]},
    )
    r = make_reported(tmp_path, engine, samples_root, sample_cases["DEMO-001"], settings)
    (r.folder / "sr.dcm").unlink()
    dispatcher = Dispatcher(r.catalog, r.outbox, settings)
    dispatcher.run_once(dispatcher.destinations[0])
    (d,) = DeliveryStore(r.catalog).deliveries()
    assert "outbox files missing: ['sr.dcm']" in (d.last_error or "")


def test_a_hanging_destination_does_not_block_another(
    tmp_path: Path,
    engine: Engine,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
    pacs: Orthanc,
) -> None:
    with fhir_server() as ehr:
        ehr.mode("hang")
        settings = make_settings(
            tmp_path,
            dispatch={
                "fhir": [{"name": "slow-ehr", "url": ehr.url}],
                "dicom": [
                    {
                        "name": "pacs",
                        "ae_title": pacs.aet,
                        "host": "127.0.0.1",
                        "port": pacs.dicom_port,
                    }
                ],
                "timeout_s": 5,
                "poll_interval_s": 0.1,
            },
        )
        r = make_reported(tmp_path, engine, samples_root, sample_cases["DEMO-002"], settings)
        dispatcher = Dispatcher(r.catalog, r.outbox, settings)
        store = DeliveryStore(r.catalog)
        dispatcher.start()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not store.deliveries(states=["delivered"]):
                time.sleep(0.1)
            states = {d.destination: d.state for d in store.deliveries()}
            assert states == {"pacs": "delivered", "slow-ehr": "pending"}
            assert pacs.find_instance(r.report.ids.sr_sop_uid) is not None
        finally:
            ehr.mode("ok")
            dispatcher.stop(timeout_s=1)


def test_every_dispatch_list_is_a_destination_kind_built_by_its_class(tmp_path: Path) -> None:
    """One class per kind: the dispatcher builds each configured node with its kind's class."""
    from gateway.config import DESTINATION_KINDS
    from gateway.dispatch.destinations import KINDS, Payload, build_destinations

    assert set(KINDS) == set(DESTINATION_KINDS)
    settings = make_settings(
        tmp_path,
        dispatch={
            "dicom": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 104}],
            "dicomweb": [{"name": "web", "url": "http://127.0.0.1:1/dicom-web"}],
            "fhir": [{"name": "ehr", "url": "http://127.0.0.1:1/fhir"}],
            "hl7v2": [
                {
                    "name": "lis",
                    "host": "127.0.0.1",
                    "port": 2575,
                    "receiving_application": "LIS",
                    "receiving_facility": "PATHOLOGY",
                }
            ],
        },
    )
    built = build_destinations(settings)
    assert [(d.kind, d.name, d.payload) for d in built] == [
        ("dicom", "pacs", Payload.DICOM),
        ("dicomweb", "web", Payload.DICOM),
        ("fhir", "ehr", Payload.FHIR_BUNDLE),
        ("hl7v2", "lis", Payload.HL7V2),
    ]
    assert all(isinstance(d, KINDS[d.kind]) for d in built)
