"""``ihgamp serve`` as a process: scoring end to end, crash safety, restart, no PHI in logs."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from typer.testing import CliRunner

from gateway.catalog import AnalysisStore, Catalog, StudyState
from gateway.cli.app import app
from ihgamp_core.synthetic.samples import SampleCase
from support.gateway import (
    GatewayProcess,
    dataset_bytes,
    free_port,
    send,
    settings_dict,
    storescu,
    tiny_wsi,
    wait_for,
    write_toml,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _config(tmp_path: Path, **sections: dict[str, Any]) -> tuple[Path, int, str]:
    port = free_port()
    data = settings_dict(tmp_path, dicom={"port": port}, **sections)
    return write_toml(tmp_path / "gateway.toml", data), port, data["catalog"]["url"]


def _study(url: str, uid: str) -> Any:
    catalog = Catalog(url)
    try:
        return catalog.study(uid)
    finally:
        catalog.close()


def _hrd_path(url: str, uid: str) -> Path | None:
    """Where the study's HRD result was written (its catalog row says)."""
    catalog = Catalog(url)
    try:
        row = AnalysisStore(catalog).result(uid, "hrd")
    finally:
        catalog.close()
    return None if row is None else Path(row.result_path)


def _state_is(url: str, uid: str, *states: str) -> Any:
    study = _study(url, uid)
    return study if study is not None and study.state in states else None


def test_serve_receives_completes_scores_and_logs_no_patient_data(
    tmp_path: Path, samples_root: Path, sample_cases: dict[str, SampleCase], catalog_url: str
) -> None:
    """On SQLite and PostgreSQL: scoring end to end, and not one identifier in the log."""
    config, port, url = _config(tmp_path, logging={"level": "DEBUG"}, catalog={"url": catalog_url})
    log = tmp_path / "gateway.log"
    planted = {
        "accession": "ACCSECRET" + "7" * 71,  # 80 characters: longer than any column
        "name": "PLANTEDSURNAME^GIVEN",
        "id": "PLANTED-PID-4711",
    }
    overlong = tiny_wsi(
        tmp_path / "bad",
        "1.2.3.4.5.6.7",
        patient_name=planted["name"],
        patient_id=planted["id"],
        AccessionNumber=planted["accession"],
    )
    gw = GatewayProcess(config, log).start()
    try:
        gw.wait_listening(port)
        # Refused with a status a sender does not retry forever (not 0xA7xx).
        assert send(port, [overlong]) == [0xA900]
        for case_id in ("DEMO-001", "DEMO-002"):
            proc = storescu(port, [samples_root / "dicom" / case_id])
            assert proc.returncode == 0, proc.stderr
        for case_id in ("DEMO-001", "DEMO-002"):
            uid = sample_cases[case_id].identity["study_instance_uid"]
            study = wait_for(
                lambda u=uid: _state_is(url, u, StudyState.SCORED, StudyState.FAILED), timeout=180
            )
            assert study.state == StudyState.SCORED, study.state_reason
            path = _hrd_path(url, uid)
            assert path is not None and path.parent.name == "hrd" and path.parent.parent.name == uid
            result = json.loads(path.read_text())
            assert result["case_id"] == uid and result["n_tiles"] == 3 * len(result["slides"])
        runner = CliRunner()
        out = runner.invoke(app, ["status", "--config", str(config), "--json"])
        assert out.exit_code == 0, out.output
        states = {s["study_uid"]: s["state"] for s in json.loads(out.output)["studies"]}
        assert set(states.values()) == {"scored"}
    finally:
        assert gw.stop() == 0  # SIGTERM: clean exit
    text = log.read_text()
    assert "analysis scored" in text and "association accepted" in text
    assert "AccessionNumber is longer than 64 characters" in text
    for secret in [*planted.values(), "ACCSECRET", "PLANTEDSURNAME"]:
        assert secret not in text, f"log contains patient data: {secret}"
    for case in sample_cases.values():
        ident = case.identity
        name_parts = [p for p in str(ident["patient_name"]).replace("^", " ").split() if p]
        for secret in [
            ident["patient_id"],
            ident["patient_name"],
            *name_parts,
            ident["birth_date"].replace("-", ""),
        ]:
            assert secret not in text, f"log contains patient data: {secret}"


def test_kill_9_during_receive_loses_no_acknowledged_instance(
    tmp_path: Path, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    config, port, url = _config(tmp_path)
    log = tmp_path / "gateway.log"
    case = sample_cases["DEMO-001"]
    study_uid = case.identity["study_instance_uid"]
    acked = sorted((samples_root / case.dicom[0]).glob("*.dcm"))
    big = tiny_wsi(tmp_path / "big", study_uid, payload=600 * 2**20)
    gw = GatewayProcess(config, log).start()
    gw.wait_listening(port)
    assert send(port, acked) == [0] * len(acked)
    errors: list[BaseException] = []

    def send_big() -> None:
        try:
            send(port, [big])
        except BaseException as exc:  # the connection dies with the server
            errors.append(exc)

    sender = threading.Thread(target=send_big)
    sender.start()
    incoming = tmp_path / "spool" / ".incoming"  # one folder per node below it

    def partial() -> list[Path]:
        return [p for p in incoming.rglob("*") if p.is_file()]

    wait_for(
        lambda: any(p.stat().st_size > 20 * 2**20 for p in partial()),
        timeout=60,
        interval=0.02,
    )
    gw.kill()  # SIGKILL in the middle of the 600 MB transfer
    sender.join(timeout=60)
    assert partial(), "the partial transfer should be in .incoming, not the spool"

    gw = GatewayProcess(config, log).start()
    try:
        gw.wait_listening(port)
        assert not partial(), "partial files are removed at start-up"
        spooled = sorted(p for p in (tmp_path / "spool").rglob("*.dcm"))
        assert len(spooled) == len(acked)  # every acknowledged instance, nothing else
        catalog = Catalog(url)
        try:
            for path in acked:
                uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
                version, sha, stored = catalog.current_instance(uid)  # type: ignore[misc]
                assert hashlib.sha256(Path(stored).read_bytes()).hexdigest() == sha
                assert dataset_bytes(Path(stored)) == dataset_bytes(path)
        finally:
            catalog.close()
        study = wait_for(lambda: _state_is(url, study_uid, StudyState.SCORED), timeout=180)
        path = _hrd_path(url, study_uid)
        assert study is not None and path is not None and path.is_file()
    finally:
        gw.stop()


def test_restart_resumes_a_half_received_study_and_a_new_slide_reopens_it(
    tmp_path: Path, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    config, port, url = _config(
        tmp_path, completion={"series_stable_s": 3, "study_stable_s": 6, "poll_interval_s": 0.2}
    )
    log = tmp_path / "gateway.log"
    case = sample_cases["DEMO-002"]
    uid = case.identity["study_instance_uid"]
    first, second = (sorted((samples_root / rel).glob("*.dcm")) for rel in case.dicom)
    gw = GatewayProcess(config, log).start()
    gw.wait_listening(port)
    assert send(port, first) == [0] * len(first)
    assert gw.stop() == 0  # stopped before the study timer fired
    assert _study(url, uid).state == StudyState.RECEIVING
    started = time.monotonic()
    gw = GatewayProcess(config, log).start()
    try:
        gw.wait_listening(port)
        study = wait_for(lambda: _state_is(url, uid, StudyState.SCORED), timeout=180)
        assert study.completed_at is not None and not study.forced
        result = json.loads(_hrd_path(url, uid).read_text())  # type: ignore[union-attr]
        assert len(result["slides"]) == 1
        # The second slide arrives later: the study reopens and is scored again with both.
        assert send(port, second) == [0] * len(second)
        wait_for(
            lambda: _state_is(
                url,
                uid,
                StudyState.RECEIVING,
                StudyState.COMPLETE,
                StudyState.QUEUED,
                StudyState.SCORING,
            ),
            timeout=30,
        )

        def rescored() -> Any:
            s = _state_is(url, uid, StudyState.SCORED)
            if s is None:
                return None
            path = _hrd_path(url, uid)
            assert path is not None
            return s if len(json.loads(path.read_text())["slides"]) == 2 else None

        wait_for(rescored, timeout=180)
    finally:
        gw.stop()
    assert time.monotonic() - started < 400


def test_forced_completion_and_rescore_from_the_command_line(
    tmp_path: Path, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    config, port, url = _config(
        tmp_path, completion={"series_stable_s": 600, "study_stable_s": 600, "force_after_s": 900}
    )
    case = sample_cases["DEMO-001"]
    uid = case.identity["study_instance_uid"]
    runner = CliRunner()
    gw = GatewayProcess(config, tmp_path / "gateway.log").start()
    try:
        gw.wait_listening(port)
        assert send(port, sorted((samples_root / case.dicom[0]).glob("*.dcm")))[0] == 0
        out = runner.invoke(app, ["rescore", uid, "--config", str(config)])
        assert out.exit_code == 2 and "receiving" in out.output
        out = runner.invoke(app, ["complete", uid, "--config", str(config)])
        assert out.exit_code != 0 and "--force" in out.output
        out = runner.invoke(app, ["complete", uid, "--force", "--config", str(config)])
        assert out.exit_code == 0, out.output
        study = wait_for(lambda: _state_is(url, uid, StudyState.SCORED), timeout=180)
        assert study.forced
        first_scored = study.scored_at
        out = runner.invoke(app, ["rescore", uid, "--config", str(config)])
        assert out.exit_code == 0, out.output

        def rescored() -> bool:
            from gateway.catalog import JobStore

            catalog = Catalog(url)
            try:
                jobs = JobStore(catalog).jobs(study_uid=uid)
            finally:
                catalog.close()
            return [j.state for j in jobs] == ["done", "done"]

        wait_for(rescored, timeout=180)
        # Same slides, same model: the result stands (its SR is not re-issued with new
        # content under the same UIDs); the job says so instead of running again.
        again = wait_for(lambda: _state_is(url, uid, StudyState.SCORED), timeout=60)
        assert again.scored_at == first_scored
        log = (tmp_path / "gateway.log").read_text()
        assert "inputs and model unchanged since the last result" in log
        out = runner.invoke(app, ["status", "--config", str(config)])
        assert out.exit_code == 0 and "scored" in out.output
    finally:
        gw.stop()


def test_serve_refuses_to_start_with_a_bad_configuration(tmp_path: Path) -> None:
    bad = write_toml(tmp_path / "bad.toml", {"dicom": {"port": 70000, "accept_any_ae": True}})
    out = CliRunner().invoke(app, ["serve", "--config", str(bad)])
    assert out.exit_code == 2 and "dicom.port" in out.output
    out = CliRunner().invoke(app, ["config", "check", "--config", str(bad)])
    assert out.exit_code == 2 and "less than or equal to 65535" in out.output


def test_sigterm_hands_a_running_job_back_without_costing_an_attempt(
    tmp_path: Path, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    from gateway.catalog import JobStore

    case = sample_cases["DEMO-001"]
    uid = case.identity["study_instance_uid"]
    config, port, url = _config(
        tmp_path,
        worker={"count": 1, "lease_s": 600, "stop_timeout_s": 0.5},
        model={"max_tiles": 24, "min_tiles": 1, "device": "cpu", "batch_size": 4},
    )
    files = sorted((samples_root / "dicom" / case.case_id).rglob("*.dcm"))
    gw = GatewayProcess(config, tmp_path / "gateway.log").start()
    gw.wait_listening(port)
    assert send(port, files) == [0] * len(files)

    def running() -> bool:
        catalog = Catalog(url)
        try:
            return any(j.state == "running" for j in JobStore(catalog).jobs(study_uid=uid))
        finally:
            catalog.close()

    wait_for(running, timeout=120, interval=0.1)
    assert gw.stop() == 0  # SIGTERM while the job runs (24 tiles on the CPU)
    catalog = Catalog(url)
    try:
        (job,) = JobStore(catalog).jobs(study_uid=uid)
        assert (job.state, job.attempts, job.lease_owner) == ("queued", 0, None)
        study = catalog.study(uid)
        assert study is not None and study.state == StudyState.QUEUED
    finally:
        catalog.close()
    gw = GatewayProcess(config, tmp_path / "gateway.log").start()  # the next start takes it at once
    try:
        assert wait_for(lambda: _state_is(url, uid, StudyState.SCORED), timeout=300)
    finally:
        assert gw.stop() == 0
    assert "running jobs handed back at shutdown" in (tmp_path / "gateway.log").read_text()
