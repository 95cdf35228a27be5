"""The compose stack as an integration engineer runs it: up, send a study, read the SR back.

deploy/compose/ is copied to a temporary folder (with the helper images' build folders, as
compose.yaml expects them) and given fresh secrets by deploy/make-secrets.sh; the only
change to its gateway.toml is a 16-tile cap so the DEMO model scores in seconds on a CPU.
Two profiles run: `cpu` (one gateway process) and `scale-out` (one container per role,
RabbitMQ as the Celery broker).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.dcmtk import send_with_storescu
from gateway.pacs_local import free_port
from ihgamp_core.synthetic.samples import SampleCase
from support.docker import DockerEngine

from .conftest import REPO

# Building the images (first run: several minutes on 2 busy cores) counts against the
# first test that needs them.
pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]


def _wait(what: str, probe: Callable[[], Any], timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


@pytest.fixture()
def stack(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine: DockerEngine,
    gateway_image: str,
    helper_images: dict[str, str],
) -> Any:
    profile = getattr(request, "param", "cpu")
    root = tmp_path / "deploy"
    shutil.copytree(
        REPO / "deploy/compose", root / "compose", ignore=shutil.ignore_patterns(".env")
    )
    shutil.rmtree(root / "compose/secrets")
    for folder in ("postgres", "orthanc", "rabbitmq"):
        shutil.copytree(REPO / "deploy/docker" / folder, root / "docker" / folder)
    import subprocess

    subprocess.run(
        [str(REPO / "deploy/make-secrets.sh"), str(root / "compose/secrets")],
        check=True,
        capture_output=True,
    )
    config = root / "compose/gateway.toml"
    text = config.read_text()
    assert 'device = "auto"\n' in text
    config.write_text(text.replace('device = "auto"\n', 'device = "auto"\nmax_tiles = 16\n'))
    ports = {name: free_port() for name in ("dicom", "http", "pacs_http", "pacs_dicom")}
    env = {
        "COMPOSE_PROFILES": f"{profile},demo",
        "IHGAMP_IMAGE": gateway_image,
        "IHGAMP_POSTGRES_IMAGE": helper_images["postgres"],
        "IHGAMP_RABBITMQ_IMAGE": helper_images["rabbitmq"],
        "IHGAMP_ORTHANC_IMAGE": helper_images["orthanc"],
        "IHGAMP_DICOM_PUBLISH": f"127.0.0.1:{ports['dicom']}",
        "IHGAMP_HTTP_PUBLISH": f"127.0.0.1:{ports['http']}",
        "IHGAMP_PACS_HTTP_PUBLISH": f"127.0.0.1:{ports['pacs_http']}",
        "IHGAMP_PACS_DICOM_PUBLISH": f"127.0.0.1:{ports['pacs_dicom']}",
    }
    project = f"ihgamp-test-{ports['http']}"

    def compose(*args: str, timeout: float = 300) -> str:
        return engine.compose(root / "compose", project, *args, env=env, timeout=timeout).stdout

    token = (root / "compose/secrets/api_token").read_text().strip()
    try:
        yield compose, ports, token, project
    finally:
        compose("down", "--volumes", "--remove-orphans", timeout=180)


def _studies(ports: dict[str, int], token: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"http://127.0.0.1:{ports['http']}/api/studies",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    response.raise_for_status()
    return list(response.json())


def _sr_series(ports: dict[str, int], study_uid: str) -> list[dict[str, Any]]:
    response = httpx.post(
        f"http://127.0.0.1:{ports['pacs_http']}/tools/find",
        json={
            "Level": "Series",
            "Query": {"StudyInstanceUID": study_uid, "Modality": "SR"},
            "Expand": True,
        },
        timeout=10,
    )
    response.raise_for_status()
    return list(response.json())


def test_study_sent_to_the_stack_comes_back_as_an_sr_and_survives_down_up(
    stack: Any, engine: DockerEngine, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    compose, ports, token, project = stack
    case = sample_cases["DEMO-001"]
    study_uid = str(case.identity["study_instance_uid"])

    compose("up", "-d")
    _wait("the gateway API", lambda: _studies(ports, token) == [], timeout=240)
    ps = compose("ps")
    assert "127.0.0.1:" in ps and "0.0.0.0:" not in ps  # published on loopback only

    send_with_storescu(samples_root / "dicom" / case.case_id, ports["dicom"])
    scored = _wait(
        "the study to be scored and delivered",
        lambda: [
            s
            for s in _studies(ports, token)
            if s["study_uid"] == study_uid
            and s["state"] == "scored"
            and [d["state"] for d in s["deliveries"]] == ["delivered"]
        ],
    )[0]
    (hrd,) = scored["calls"]
    assert hrd["job_key"] == "hrd" and 0.0 <= hrd["value"] <= 1.0 and hrd["demo"] is True
    series = _wait("the SR in the demo Orthanc", lambda: _sr_series(ports, study_uid))
    assert len(series) == 1
    assert series[0]["MainDicomTags"]["SeriesDescription"].endswith("DEMO")
    result_file = f"/var/lib/ihgamp/outbox/{study_uid}/hrd/result.json"
    result = json.loads(compose("exec", "-T", "gateway", "cat", result_file))
    assert result["model"]["demo"] is True and "DEMO" in result["model"]["display_name"]

    compose("down")  # no --volumes: the catalog, spool, outbox and PACS stay
    volumes = engine.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    for name in ("spool", "outbox", "catalog", "pacs"):
        assert f"{project}_{name}" in volumes
    assert compose("ps", "-q").strip() == ""

    compose("up", "-d")
    again = _wait("the catalog after a second up", lambda: _studies(ports, token), timeout=240)
    assert [(s["study_uid"], s["state"], s["calls"]) for s in again] == [
        (study_uid, "scored", scored["calls"])
    ]
    assert json.loads(compose("exec", "-T", "gateway", "cat", result_file)) == result
    assert len(_sr_series(ports, study_uid)) == 1


def _node(compose: Callable[..., str], service: str, path: str) -> str:
    """GET a path of a role's node port (9464) from inside its container."""
    code = (
        "import sys, urllib.request; "
        f"print(urllib.request.urlopen('http://127.0.0.1:9464{path}', timeout=5).read().decode())"
    )
    return compose("exec", "-T", service, "python", "-c", code)


@pytest.mark.parametrize("stack", ["scale-out"], indirect=True)
def test_scale_out_roles_receive_score_and_deliver_through_the_broker(
    stack: Any, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    """Receiver, worker, dispatcher and api in their own containers, jobs through RabbitMQ."""
    compose, ports, token, _project = stack
    case = sample_cases["DEMO-001"]
    study_uid = str(case.identity["study_instance_uid"])

    compose("up", "-d")
    _wait("the api role", lambda: _studies(ports, token) == [], timeout=240)
    running = set(compose("ps", "--services", "--filter", "status=running").split())
    assert {"receiver", "worker", "dispatcher", "api", "rabbitmq", "postgres"} <= running
    assert "gateway" not in running
    for role in ("receiver", "worker", "dispatcher"):
        _wait(f"{role} ready", lambda role=role: '"ready": true' in _node(compose, role, "/ready"))

    send_with_storescu(samples_root / "dicom" / case.case_id, ports["dicom"])
    scored = _wait(
        "the study to be scored and delivered",
        lambda: [
            s
            for s in _studies(ports, token)
            if s["study_uid"] == study_uid
            and s["state"] == "scored"
            and [d["state"] for d in s["deliveries"]] == ["delivered"]
        ],
    )[0]
    (hrd,) = scored["calls"]
    assert hrd["job_key"] == "hrd" and 0.0 <= hrd["value"] <= 1.0 and hrd["demo"] is True
    series = _wait("the SR in the demo Orthanc", lambda: _sr_series(ports, study_uid))
    assert len(series) == 1 and series[0]["MainDicomTags"]["SeriesDescription"].endswith("DEMO")
    # The job ran in the worker container (its counter), not in the receiver.
    assert 'ihgamp_jobs_total{analysis="hrd",outcome="done"} 1.0' in _node(
        compose, "worker", "/metrics"
    )
    assert 'ihgamp_jobs_total{analysis="hrd",outcome="done"} 0.0' in _node(
        compose, "receiver", "/metrics"
    )  # the series exists from the start (alerts need it), at 0: no job ran there
    assert "ihgamp_instances_received_total" in _node(compose, "receiver", "/metrics")
