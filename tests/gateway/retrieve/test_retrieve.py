"""Query/retrieve against a real Orthanc: C-FIND, C-MOVE, C-GET, DICOMweb, auto-pull."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid
from typer.testing import CliRunner

from gateway.catalog import StudyState
from gateway.catalog.dimse_audit import DimseAudit
from gateway.catalog.pull_cursors import PullCursorStore
from gateway.cli.app import app
from gateway.errors import RemoteError
from gateway.service import Gateway
from ihgamp_core.hrd.engine import Engine
from ihgamp_core.synthetic.samples import SampleCase
from support.gateway import free_port, make_settings, wait_for
from support.orthanc import Orthanc, orthanc

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _pixel_data(path: Path) -> bytes:
    return bytes(pydicom.dcmread(path).PixelData)


def _upload_case(pacs: Orthanc, samples_root: Path, case: SampleCase) -> None:
    for path in sorted((samples_root / "dicom" / case.case_id).rglob("*.dcm")):
        pacs.upload(path)


class Env:
    """A gateway in this process (listener port known in advance) and its settings."""

    def __init__(
        self,
        tmp: Path,
        engine: Engine,
        pacs_sections: list[dict[str, Any]],
        port: int | None = None,
        **sections: dict[str, Any],
    ) -> None:
        self.port = port or free_port()
        sections.setdefault("http", {"enabled": False})
        self.settings = make_settings(
            tmp,
            dicom={
                "port": self.port,
                "allowed_aes": [{"ae_title": "ORTHANC"}, {"ae_title": "SCANNER"}],
            },
            pacs=pacs_sections,
            **sections,
        )
        self.gateway = Gateway(self.settings, engine=engine)
        self.gateway.start()

    def state(self, study_uid: str) -> str | None:
        study = self.gateway.catalog.study(study_uid)
        return None if study is None else study.state

    def stop(self) -> None:
        self.gateway.stop()


def _pacs_section(pacs: Orthanc, retrieve: str = "move", **extra: Any) -> dict[str, Any]:
    return {
        "name": "orthanc",
        "ae_title": pacs.aet,
        "host": "127.0.0.1",
        "port": pacs.dicom_port,
        "dicomweb_url": pacs.dicomweb_url,
        "retrieve": retrieve,
        **extra,
    }


@pytest.fixture(scope="module")
def gateway_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def pacs(
    samples_root: Path, sample_cases: dict[str, SampleCase], gateway_port: int
) -> Iterator[Orthanc]:
    with orthanc(modalities={"ihgamp": ["IHGAMP", "127.0.0.1", gateway_port]}) as server:
        for case_id in ("DEMO-001", "DEMO-002"):
            _upload_case(server, samples_root, sample_cases[case_id])
        yield server


def test_find_lists_slide_studies_and_series(
    tmp_path: Path, pacs: Orthanc, sample_cases: dict[str, SampleCase]
) -> None:
    config = tmp_path / "gw.toml"
    from support.gateway import settings_dict, write_toml

    data = settings_dict(tmp_path)
    data["pacs"] = [_pacs_section(pacs)]
    write_toml(config, {k: v for k, v in data.items() if k != "pacs"})
    with config.open("a") as fh:  # [[pacs]] as an array of tables
        fh.write(
            "\n[[pacs]]\n"
            + "\n".join(
                f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {v}"
                for k, v in data["pacs"][0].items()
            )
            + "\n"
        )
    runner = CliRunner()
    out = runner.invoke(
        app, ["find", "--pacs", "orthanc", "--modality", "SM", "--config", str(config), "--json"]
    )
    assert out.exit_code == 0, out.output
    import json

    found = {m["study_uid"]: m for m in json.loads(out.output)}
    demo1 = sample_cases["DEMO-001"].identity
    assert set(found) == {
        sample_cases[c].identity["study_instance_uid"] for c in ("DEMO-001", "DEMO-002")
    }
    assert found[demo1["study_instance_uid"]]["accession_number"] == demo1["accession_number"]
    assert "SM" in found[demo1["study_instance_uid"]]["modalities"]
    accession = sample_cases["DEMO-002"].identity["accession_number"]
    out = runner.invoke(
        app,
        [
            "find",
            "--pacs",
            "orthanc",
            "--accession",
            accession,
            "--series",
            "--json",
            "--config",
            str(config),
        ],
    )
    assert out.exit_code == 0, out.output
    (study,) = json.loads(out.output)
    assert len(study["series"]) == 2 and {s["modality"] for s in study["series"]} == {"SM"}
    out = runner.invoke(app, ["find", "--pacs", "nowhere", "--config", str(config)])
    assert out.exit_code == 2 and "no PACS named 'nowhere'" in out.output


@pytest.mark.parametrize("method", ["move", "get", "dicomweb"])
def test_retrieve_brings_the_full_study_byte_identical_and_scores_it(
    method: str,
    tmp_path: Path,
    engine: Engine,
    pacs: Orthanc,
    gateway_port: int,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> None:
    case = sample_cases["DEMO-002"]
    uid = case.identity["study_instance_uid"]
    # C-MOVE needs our listener on the port Orthanc knows.
    port = gateway_port if method == "move" else None
    env = Env(tmp_path, engine, [_pacs_section(pacs, method)], port=port)
    try:
        seen: list[tuple[int, int, int, int]] = []
        outcome = env.gateway.retrieve.retrieve("orthanc", uid, progress=lambda *a: seen.append(a))
        assert outcome.report.complete and outcome.queued, outcome
        sources = sorted((samples_root / "dicom" / case.case_id).rglob("*.dcm"))
        assert outcome.report.completed == len(sources)
        assert seen and seen[-1][0] == len(sources)
        for source in sources:
            sop = str(pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID)
            _, _, stored = env.gateway.catalog.current_instance(sop)  # type: ignore[misc]
            assert _pixel_data(Path(stored)) == _pixel_data(source), source.name
        wait_for(lambda: env.state(uid) == StudyState.SCORED, timeout=180)
    finally:
        env.stop()


def test_unknown_move_destination_names_the_fix(
    tmp_path: Path,
    engine: Engine,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> None:
    uid = sample_cases["DEMO-001"].identity["study_instance_uid"]
    # Orthanc 1.10 answers 0xC000 (not 0xA801) for a destination it does not know.
    with orthanc() as stranger:
        _upload_case(stranger, samples_root, sample_cases["DEMO-001"])
        env = Env(tmp_path, engine, [_pacs_section(stranger, "move")])
        try:
            with pytest.raises(
                RemoteError,
                match="0xC000; if it does not know the move "
                "destination IHGAMP, add our AE title, host and port",
            ):
                env.gateway.retrieve.retrieve("orthanc", uid)
            study = env.gateway.catalog.study(uid)
            assert study is not None and "0xC000" in (study.hold_reason or "")
        finally:
            env.stop()


def test_status_a801_from_a_pacs_says_what_to_fix(tmp_path: Path) -> None:
    """A pynetdicom Q/R SCP that does not know the destination answers 0xA801."""
    from pynetdicom import AE, evt

    from gateway.config import PacsNode
    from gateway.retrieve.dimse import MOVE_STUDY_ROOT, move_study

    def on_move(event: Any) -> Any:
        yield None, None  # destination unknown -> pynetdicom sends 0xA801

    scp = AE(ae_title="QRSCP")
    scp.add_supported_context(MOVE_STUDY_ROOT)
    port = free_port()
    server = scp.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_MOVE, on_move)]
    )
    try:
        node = PacsNode(name="qr", ae_title="QRSCP", host="127.0.0.1", port=port)
        with pytest.raises(RemoteError, match="does not know the move destination.*0xA801"):
            move_study(node, "IHGAMP", "IHGAMP", "1.2.3")
    finally:
        server.shutdown()


def test_unreachable_pacs_is_a_clear_error_and_the_poller_retries(
    tmp_path: Path,
    engine: Engine,
) -> None:
    dead = {
        "name": "orthanc",
        "ae_title": "GONE",
        "host": "127.0.0.1",
        "port": free_port(),
        "auto_pull": True,
    }
    env = Env(tmp_path, engine, [dead], pull={"interval_s": 3600})
    try:
        with pytest.raises(RemoteError, match="GONE@127.0.0.1.*is unreachable"):
            env.gateway.retrieve.find("orthanc")
        node = env.settings.pacs[0]
        earlier = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        PullCursorStore(env.gateway.catalog).set("orthanc", success_at=earlier)
        assert env.gateway.puller.poll(node) == []
        cursor = PullCursorStore(env.gateway.catalog).get("orthanc")
        # The outage is recorded; the cursor stays where the last success left it, so the
        # next successful pass still covers everything since then.
        assert cursor == (earlier, cursor[1]) and "unreachable" in (cursor[1] or "")
    finally:
        env.stop()


def test_partial_failure_holds_the_study_until_forced(
    tmp_path: Path,
    engine: Engine,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> None:
    case = sample_cases["DEMO-001"]
    uid = case.identity["study_instance_uid"]
    with orthanc() as server:
        _upload_case(server, samples_root, case)
        # A Secondary Capture in the same study: the gateway does not accept that class.
        sc = pydicom.dcmread(
            next((samples_root / "dicom" / case.case_id).rglob("*.dcm")), stop_before_pixels=True
        )
        extra = pydicom.Dataset()
        extra.file_meta = pydicom.dataset.FileMetaDataset()
        extra.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        extra.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        extra.SOPClassUID = SecondaryCaptureImageStorage
        extra.SOPInstanceUID = generate_uid()
        extra.file_meta.MediaStorageSOPInstanceUID = extra.SOPInstanceUID
        for key in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber"):
            setattr(extra, key, sc.get(key))
        extra.SeriesInstanceUID = generate_uid()
        extra.Modality = "OT"
        path = tmp_path / "sc.dcm"
        extra.save_as(path, enforce_file_format=True)
        server.upload(path)
        env = Env(tmp_path, engine, [_pacs_section(server, "dicomweb")])
        try:
            outcome = env.gateway.retrieve.retrieve("orthanc", uid)
            assert not outcome.report.complete and not outcome.queued
            assert outcome.failed_instances == [str(extra.SOPInstanceUID)]
            time.sleep(3)  # longer than the study timer: held studies do not complete
            study = env.gateway.catalog.study(uid)
            assert study is not None and study.state == StudyState.RECEIVING
            assert str(extra.SOPInstanceUID) in (study.hold_reason or "")
            env.gateway.lifecycle.force(uid)
            wait_for(lambda: env.state(uid) == StudyState.SCORED, timeout=180)
        finally:
            env.stop()


def test_auto_pull_takes_a_new_study_exactly_once_across_restarts(
    tmp_path: Path,
    engine: Engine,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> None:
    port = free_port()
    with orthanc(modalities={"ihgamp": ["IHGAMP", "127.0.0.1", port]}) as server:
        pull = {"interval_s": 1, "lookback_days": 36500}  # the samples' study dates are old
        section = _pacs_section(server, "move", auto_pull=True)

        def start() -> Env:
            return Env(tmp_path, engine, [section], port=port, pull=pull)

        env = start()
        try:
            time.sleep(2)  # the poller has run: nothing to pull yet
            assert env.gateway.catalog.studies() == []
            case = sample_cases["DEMO-001"]
            uid = case.identity["study_instance_uid"]
            _upload_case(server, samples_root, case)  # arrives after the poller started
            wait_for(lambda: env.state(uid) == StudyState.SCORED, timeout=180)
            time.sleep(3)  # more polls: no second retrieve
            inbound = [
                a
                for a in DimseAudit(env.gateway.catalog).associations()
                if a["calling_ae"] == "ORTHANC"
            ]
            assert len(inbound) == 1
        finally:
            env.stop()
        env = start()  # restart: same catalog, same cursor
        try:
            time.sleep(3)
            inbound = [
                a
                for a in DimseAudit(env.gateway.catalog).associations()
                if a["calling_ae"] == "ORTHANC"
            ]
            assert len(inbound) == 1 and env.state(uid) == StudyState.SCORED
        finally:
            env.stop()


def test_pull_over_the_http_api_is_validated_queued_and_deduplicated(
    tmp_path: Path,
    engine: Engine,
    pacs: Orthanc,
    sample_cases: dict[str, SampleCase],
) -> None:
    token = "api-token-0123456789abcdef"
    http_port = free_port()
    env = Env(
        tmp_path,
        engine,
        [_pacs_section(pacs, "get")],
        http={"enabled": True, "port": http_port, "token": token},
    )
    try:
        case = sample_cases["DEMO-001"]
        url = f"http://127.0.0.1:{http_port}/api/pull"
        headers = {"Authorization": f"Bearer {token}"}
        body = {"accession_number": case.identity["accession_number"]}
        with ThreadPoolExecutor(10) as pool:  # a burst of the same request
            answers = list(
                pool.map(
                    lambda _: httpx.post(url, json=body, headers=headers, timeout=60), range(30)
                )
            )
        assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1  # one pull, not thirty
        pull_id = answers[0].json()["id"]
        uid = case.identity["study_instance_uid"]
        wait_for(lambda: env.state(uid) == StudyState.SCORED, timeout=180)
        done = httpx.get(f"{url}/{pull_id}", headers=headers, timeout=10).json()
        assert done["state"] == "done" and done["studies"] == [uid], done
        missing = httpx.post(url, json={"accession_number": "NO-SUCH"}, headers=headers, timeout=60)
        assert missing.status_code == 202
        failed = wait_for(
            lambda: (
                (r := httpx.get(f"{url}/{missing.json()['id']}", headers=headers).json())["state"]
                == "failed"
                and r
            ),
            timeout=60,
        )
        assert "no study with accession" in failed["error"]
        for bad in (
            {},
            {"accession_number": "*"},
            {"accession_number": "A", "patient_id": "P"},
            {"patient_id": "P"},
            {"study_instance_uid": "1.2.x"},
            {"accession": "A"},
        ):
            refused = httpx.post(url, json=bad, headers=headers, timeout=10)
            assert refused.status_code == 400, (bad, refused.text)
        huge = httpx.post(
            url, content=b"{" + b" " * (200 * 2**20) + b"}", headers=headers, timeout=60
        )
        assert huge.status_code == 413
        assert httpx.get(f"{url}/999999", headers=headers, timeout=10).status_code == 404
        assert httpx.post(url, json={"accession_number": "x"}, timeout=10).status_code == 401
    finally:
        env.stop()


@pytest.mark.parametrize("method", ["move", "get", "dicomweb"])
def test_a_pacs_study_of_two_patients_is_never_mixed(
    method: str, tmp_path: Path, engine: Engine
) -> None:
    """A PACS holding one Study Instance UID for two patients (a reused UID): whichever
    patient arrives first owns the study; the other's instances are refused and listed."""
    from support.gateway import tiny_wsi

    study = generate_uid()
    files = {
        patient: [tiny_wsi(tmp_path / patient, study, patient_id=patient) for _ in range(2)]
        for patient in ("PAT-A", "PAT-B")
    }
    port = free_port()
    with orthanc(modalities={"ihgamp": ["IHGAMP", "127.0.0.1", port]}) as server:
        for path in files["PAT-A"] + files["PAT-B"]:
            server.upload(path)
        env = Env(tmp_path / "gw", engine, [_pacs_section(server, method)], port=port)
        try:
            if method == "move":
                # Orthanc 1.10 ends a C-MOVE at its first refused sub-operation (0xC000),
                # so which instances were sent at all depends on its order.
                with contextlib.suppress(RemoteError):
                    env.gateway.retrieve.retrieve("orthanc", study)
            else:
                outcome = env.gateway.retrieve.retrieve("orthanc", study)
                assert not outcome.report.complete and not outcome.queued
                assert (outcome.report.completed, outcome.report.failed) == (2, 2)
            kept = {
                str(pydicom.dcmread(p, stop_before_pixels=True).PatientID)
                for p in (tmp_path / "gw" / "spool").rglob("*.dcm")
            }
            assert len(kept) == 1  # one patient's slides, never both
            refused = [
                r for r in DimseAudit(env.gateway.catalog).store_refusals() if r["status"] == 0xC000
            ]
            assert refused and all("patient identity differs" in r["reason"] for r in refused)
            stored = env.gateway.catalog.study(study)
            assert stored is not None and stored.state == StudyState.RECEIVING  # held, not queued
        finally:
            env.stop()


def test_auto_pull_rescores_a_study_only_for_a_result_of_another_engine_model(
    tmp_path: Path, engine: Engine
) -> None:
    """The engine's analyses (HRD) are re-scored when its model changed; others are not."""
    from gateway.catalog import AnalysisStore

    dead = {"name": "p", "ae_title": "GONE", "host": "127.0.0.1", "port": free_port()}
    env = Env(tmp_path, engine, [{**dead, "auto_pull": True}], pull={"interval_s": 3600})
    try:
        puller = env.gateway.puller
        assert puller is not None and puller.model_keys == {"hrd": engine.model.key[:160]}
        uid = "1.2.3.77"
        env.gateway.catalog.hold(uid, "a test study")
        store = AnalysisStore(env.gateway.catalog)
        store.record(uid, "her2:A1", "her2", "/o/a.json", "her2-1+", 0.5, "dual", "m2", True)
        assert not puller._other_model(uid)  # HER2's model is not the engine's
        store.record(
            uid, "hrd", "hrd", "/o/b.json", "hrd-unlikely", 0.2, None, engine.model.key, True
        )
        assert not puller._other_model(uid)
        store.record(uid, "hrd", "hrd", "/o/b.json", "hrd-unlikely", 0.2, None, "older-head", True)
        assert puller._other_model(uid)
    finally:
        env.stop()
