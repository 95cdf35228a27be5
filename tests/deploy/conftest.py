"""The Docker engine and the deploy/ images, shared by the container tests of one session.

The engine is started once (tests/support/docker.py) and stopped at the end of the session;
images are built only when their inputs changed since the last run (content-hash label).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ihgamp_core import __version__
from support.docker import DOCKER_CLI, DockerEngine, docker_engine, engine_missing, tree_digest

REPO = Path(__file__).resolve().parents[2]
GATEWAY_TAG = "ihgamp/gateway:test"
POSTGRES_TAG = "ihgamp/postgres:15"
ORTHANC_TAG = "ihgamp/demo-orthanc:1.10"
RABBITMQ_TAG = "ihgamp/rabbitmq:3.10"
#: What the gateway image is built from: the Dockerfile, and what .dockerignore lets in.
GATEWAY_INPUTS = (
    ".dockerignore",
    "deploy/docker/Dockerfile",
    "deploy/docker/gateway.toml",
    "deploy/docker/certs",
    "pyproject.toml",
    "README.md",
    "constraints.txt",
    "src",
    "sample_data/demo_head",
)


@pytest.fixture(scope="session")
def engine() -> Iterator[DockerEngine]:
    reason = engine_missing()
    if reason is not None:
        pytest.fail(f"the container tests need a Docker engine: {reason}")
    with docker_engine() as running:
        yield running
        for step, seconds in running.timings.items():
            print(f"\n[container] {step}: {seconds:.0f} s", file=sys.stderr)


@pytest.fixture(scope="session")
def base_image(engine: DockerEngine) -> str:
    """debian:bookworm-slim built offline (no-op when present); its image id."""
    subprocess.run(
        [str(REPO / "deploy/docker/build-base-offline.sh")],
        env={**engine.env, "DOCKER": DOCKER_CLI},
        check=True,
        timeout=900,
    )
    return engine.docker("image", "inspect", "-f", "{{.Id}}", "debian:bookworm-slim").stdout.strip()


@pytest.fixture(scope="session")
def gateway_image(engine: DockerEngine, base_image: str) -> str:
    """The gateway image from the wheelhouse (filled first when the pins changed)."""
    subprocess.run(
        [str(REPO / "deploy/docker/wheelhouse.sh")],
        env={**engine.env, "PYTHON": sys.executable},
        cwd=REPO,
        check=True,
        timeout=1800,
    )
    wheels = sorted(p.name for p in (REPO / "deploy/docker/wheelhouse").glob("*.whl"))
    digest = tree_digest(REPO, GATEWAY_INPUTS, extra=[base_image, *wheels])
    engine.ensure_image(
        GATEWAY_TAG,
        REPO,
        digest,
        dockerfile=REPO / "deploy/docker/Dockerfile",
        build_args={"VERSION": __version__},
    )
    return GATEWAY_TAG


@pytest.fixture(scope="session")
def helper_images(engine: DockerEngine, base_image: str) -> dict[str, str]:
    """The compose stack's PostgreSQL, RabbitMQ and demo Orthanc images."""
    helpers = ((POSTGRES_TAG, "postgres"), (ORTHANC_TAG, "orthanc"), (RABBITMQ_TAG, "rabbitmq"))
    for tag, folder in helpers:
        context = REPO / "deploy/docker" / folder
        digest = tree_digest(REPO, [str(context.relative_to(REPO))], extra=[base_image])
        engine.ensure_image(tag, context, digest, timeout=900)
    return {"postgres": POSTGRES_TAG, "orthanc": ORTHANC_TAG, "rabbitmq": RABBITMQ_TAG}
