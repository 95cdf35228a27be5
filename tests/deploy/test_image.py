"""The gateway image: what it holds, and that it runs as the issue asks."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from pynetdicom import AE

from gateway.pacs_local import free_port
from ihgamp_core import __version__
from support.docker import DockerEngine

# Building the images (first run: several minutes on 2 busy cores) counts against the
# first test that needs them.
pytestmark = [pytest.mark.container, pytest.mark.timeout(2400)]


def test_version_and_config_check_run_offline(engine: DockerEngine, gateway_image: str) -> None:
    version = engine.docker("run", "--rm", "--network", "none", gateway_image, "--version")
    assert version.stdout.strip() == f"ihgamp {__version__}"
    check = engine.docker("run", "--rm", "--network", "none", gateway_image, "config", "check")
    out = check.stdout
    assert "torch.cuda.is_available(): False" in out  # no GPU here; True with --gpus all
    assert "(CUDA runtime 13." in out  # the CUDA build of torch, so a GPU host can use it
    assert "model.device auto -> cpu" in out
    assert out.rstrip().endswith("configuration is valid")


def test_image_metadata_user_volumes_and_no_model_files(
    engine: DockerEngine, gateway_image: str
) -> None:
    info = json.loads(engine.docker("image", "inspect", gateway_image).stdout)[0]["Config"]
    assert info["User"] == "10001:10001"
    assert info["Entrypoint"] == ["ihgamp"] and info["Cmd"] == ["serve"]
    assert "/health" in " ".join(info["Healthcheck"]["Test"])
    assert set(info["Volumes"]) == {
        "/var/lib/ihgamp/spool",
        "/var/lib/ihgamp/outbox",
        "/var/lib/ihgamp/db",
        "/etc/ihgamp",
        "/opt/ihgamp/models",
    }
    assert set(info["ExposedPorts"]) == {"11112/tcp", "8080/tcp"}
    labels = info["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.base.name"] == "debian:bookworm-slim"
    # No weights, checkpoints or keys anywhere in the image; no pip or compiler either.
    found = engine.docker(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        gateway_image,
        "-c",
        "find / -xdev \\( -name '*.safetensors' -o -name '*.pt' -o -name '*.pth' -o -name '*.ckpt'"
        " -o -name '*.onnx' -o -name '*.key' -o -name 'api_token*' -o -name 'db_password*' \\)"
        " -print; command -v pip pip3 gcc cc || true",
    ).stdout.split()
    # Not ours: site-packages/*.pth are Python path files (setuptools'), and libraries'
    # own test fixtures (pynetdicom's tests/cert_files/*.key) are public test data.
    found = [
        f
        for f in found
        if not (f.endswith(".pth") and f.split("/")[-2] == "site-packages")
        and not ("/site-packages/" in f and "/tests/" in f)
    ]
    assert found == []


def test_runs_read_only_as_non_root_and_stops_cleanly(
    engine: DockerEngine, gateway_image: str
) -> None:
    http, dicom = free_port(), free_port()
    name = f"ihgamp-test-ro-{http}"
    engine.docker(
        "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges:true", "--health-interval", "2s",
        "-p", f"127.0.0.1:{http}:8080", "-p", f"127.0.0.1:{dicom}:11112", gateway_image,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{http}/ready", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert ready is not None and ready.status_code == 200, engine.docker("logs", name).stderr
        health = httpx.get(f"http://127.0.0.1:{http}/health", timeout=5).json()
        assert health == {"status": "ok", "version": __version__}
        assert engine.docker("exec", name, "id", "-u").stdout.strip() == "10001"
        denied = engine.docker("exec", name, "touch", "/opt/ihgamp/x", check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr
        ae = AE(ae_title="ECHO-SCU")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", dicom, ae_title="IHGAMP")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        while time.monotonic() < deadline:  # the image's HEALTHCHECK command works
            state = engine.docker("inspect", "-f", "{{.State.Health.Status}}", name).stdout
            if state.strip() == "healthy":
                break
            time.sleep(1)
        assert state.strip() == "healthy"
        # The DEMO model is what scores without operator model files, and says so.
        logs = engine.docker("logs", name).stderr
        loaded = [json.loads(line) for line in logs.splitlines() if '"model loaded"' in line]
        assert loaded and "DEMO" in loaded[0]["head"]
        engine.docker("stop", "-t", "60", name)  # SIGTERM to PID 1 (ihgamp)
        code = engine.docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0"
    finally:
        engine.docker("rm", "-f", "-v", name, check=False)
