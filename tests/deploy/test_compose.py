"""The compose stack as an integration engineer runs it: up, send a study, read the SR back.

deploy/compose/ is copied to a temporary folder (with the helper images' build folders, as
compose.yaml expects them) and given fresh secrets by deploy/make-secrets.sh; the only
change to its gateway.toml is a 16-tile cap so the DEMO model scores in seconds on a CPU.
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

from gateway.demo import send_with_storescu
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
    tmp_path: Path, engine: DockerEngine, gateway_image: str, helper_images: dict[str, str]
) -> Any:
    root = tmp_path / "deploy"
    shutil.copytree(
        REPO / "deploy/compose", root / "compose", ignore=shutil.ignore_patterns(".env")
    )
    shutil.rmtree(root / "compose/secrets")
    for folder in ("postgres", "orthanc"):
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
        "COMPOSE_PROFILES": "cpu,demo",
        "IHGAMP_IMAGE": gateway_image,
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
    assert 0.0 <= scored["probability"] <= 1.0
    series = _wait("the SR in the demo Orthanc", lambda: _sr_series(ports, study_uid))
    assert len(series) == 1
    assert series[0]["MainDicomTags"]["SeriesDescription"].endswith("DEMO")
    result_file = f"/var/lib/ihgamp/outbox/{study_uid}/result.json"
    result = json.loads(compose("exec", "-T", "gateway", "cat", result_file))
    assert result["model"]["demo"] is True and "DEMO" in result["model"]["display_name"]

    compose("down")  # no --volumes: the catalog, spool, outbox and PACS stay
    volumes = engine.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    for name in ("spool", "outbox", "catalog", "pacs"):
        assert f"{project}_{name}" in volumes
    assert compose("ps", "-q").strip() == ""

    compose("up", "-d")
    again = _wait("the catalog after a second up", lambda: _studies(ports, token), timeout=240)
    assert [(s["study_uid"], s["state"], s["probability"]) for s in again] == [
        (study_uid, "scored", scored["probability"])
    ]
    assert json.loads(compose("exec", "-T", "gateway", "cat", result_file)) == result
    assert len(_sr_series(ports, study_uid)) == 1
