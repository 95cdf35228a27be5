"""The HTTP service: auth, health, metrics, status page, and FHIR read/search (fhirpy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fhirpy import SyncFHIRClient

from gateway.web import HttpServer, create_app
from ihgamp_core.scoring import Engine
from ihgamp_core.synthetic.samples import SampleCase
from support.gateway import make_settings
from support.reports import Reported, make_reported

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    engine: Engine,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> Iterator[tuple[str, Reported]]:
    tmp = tmp_path_factory.mktemp("web")
    reported = make_reported(
        tmp, engine, samples_root, sample_cases["DEMO-001"], make_settings(tmp)
    )
    server = HttpServer(create_app(reported.catalog, reported.outbox, TOKEN), "127.0.0.1", 0)
    port = server.start()
    yield f"http://127.0.0.1:{port}", reported
    server.stop()


def test_fhirpy_reads_and_searches_the_observation(service: tuple[str, Reported]) -> None:
    url, reported = service
    client = SyncFHIRClient(f"{url}/fhir", authorization=f"Bearer {TOKEN}")
    obs_id = reported.report.ids.observation_identifier
    observation = client.reference("Observation", obs_id).to_resource()
    assert observation["id"] == obs_id
    assert observation["code"]["coding"][0]["code"] == "107286-7"
    assert observation["meta"]["security"][0]["code"] == "AIAST"
    found = (
        client.resources("Observation")
        .search(
            **{
                "subject:identifier": "urn:ihgamp:issuer:IHGAMP-DEMO|SYN-0001",
                "code": "http://loinc.org|107286-7",
            }
        )
        .fetch()
    )
    assert [o["id"] for o in found] == [obs_id]
    none = client.resources("Observation").search(**{"subject:identifier": "x|nobody"}).fetch()
    assert none == []


def test_fhir_endpoint_media_type_capability_and_errors(service: tuple[str, Reported]) -> None:
    url, reported = service
    metadata = httpx.get(f"{url}/fhir/metadata")
    assert metadata.status_code == 200
    assert metadata.headers["content-type"].startswith("application/fhir+json")
    assert metadata.json()["fhirVersion"] == "4.0.1"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    missing = httpx.get(f"{url}/fhir/Observation/nope", headers=headers)
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    bad = httpx.get(f"{url}/fhir/Observation", params={"patient": "x"}, headers=headers)
    assert bad.status_code == 400 and "unsupported search" in bad.text
    obs_id = reported.report.ids.observation_identifier
    unauthorised = httpx.get(f"{url}/fhir/Observation/{obs_id}")
    assert (
        unauthorised.status_code == 401
        and unauthorised.json()["resourceType"] == "OperationOutcome"
    )
    wrong = httpx.get(f"{url}/fhir/Observation/{obs_id}", headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401


def test_health_metrics_api_and_status_page(service: tuple[str, Reported]) -> None:
    url, reported = service
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert httpx.get(f"{url}/ready").status_code == 200
    metrics = httpx.get(f"{url}/metrics").text
    assert 'ihgamp_studies{state="complete"} 1.0' in metrics
    assert httpx.get(f"{url}/api/studies").status_code == 401
    studies = httpx.get(f"{url}/api/studies", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert studies[0]["study_uid"] == reported.study_uid
    page = httpx.get(f"{url}/", params={"access_token": TOKEN})
    assert page.status_code == 200 and "not a companion diagnostic" in page.text
    assert f"/studies/{reported.study_uid}/heatmap-1.png" in page.text
    png = httpx.get(
        f"{url}/studies/{reported.study_uid}/heatmap-1.png", params={"access_token": TOKEN}
    )
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        httpx.get(
            f"{url}/studies/{reported.study_uid}/sr.dcm", params={"access_token": TOKEN}
        ).status_code
        == 404
    )
    assert "SYNTHETIC" not in page.text  # no patient names on the page


def test_without_a_token_nothing_is_served(tmp_path: Path) -> None:
    from gateway.catalog import Catalog
    from gateway.dispatch.outbox import Outbox

    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    server = HttpServer(create_app(catalog, Outbox(tmp_path / "o"), None), "127.0.0.1", 0)
    port = server.start()
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/api/studies").status_code == 503
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    finally:
        server.stop()
