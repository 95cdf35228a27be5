"""The HTTP service: header-only tokens, health, metrics, API, OpenAPI, FHIR with fhirpy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fhirpy import SyncFHIRClient

from gateway.catalog import Catalog
from gateway.outbox import Outbox
from gateway.web import create_app
from support.gateway import make_settings
from support.reports import Reported

from .conftest import HTTP, OPERATOR, READER, bearer, running

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def service(reported: Reported) -> Iterator[tuple[str, Reported]]:
    app = create_app(reported.catalog, reported.outbox, reported.settings)
    with running(app) as url:
        yield url, reported


def test_fhirpy_reads_and_searches_the_observation(service: tuple[str, Reported]) -> None:
    url, reported = service
    client = SyncFHIRClient(f"{url}/fhir", authorization=f"Bearer {READER}")
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
    headers = bearer(READER)
    missing = httpx.get(f"{url}/fhir/Observation/nope", headers=headers)
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    bad = httpx.get(f"{url}/fhir/Observation", params={"_sort": "x"}, headers=headers)
    assert bad.status_code == 400 and "unsupported parameters" in bad.text
    obs_id = reported.report.ids.observation_identifier
    unauthorised = httpx.get(f"{url}/fhir/Observation/{obs_id}")
    assert (
        unauthorised.status_code == 401
        and unauthorised.json()["resourceType"] == "OperationOutcome"
    )
    wrong = httpx.get(f"{url}/fhir/Observation/{obs_id}", headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401


def test_health_metrics_api_and_heatmaps(service: tuple[str, Reported]) -> None:
    url, reported = service
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert httpx.get(f"{url}/ready").status_code == 200
    metrics = httpx.get(f"{url}/metrics").text
    assert 'ihgamp_studies{state="complete"} 1.0' in metrics
    assert httpx.get(f"{url}/api/studies").status_code == 401
    studies = httpx.get(f"{url}/api/studies", headers=bearer(READER)).json()
    assert studies[0]["study_uid"] == reported.study_uid
    outcome = reported.report.outcome
    assert studies[0]["calls"] == [
        {
            "job_key": "hrd",
            "analysis": "hrd",
            "call": outcome.call,
            "value": pytest.approx(outcome.value),
            "demo": True,
        }
    ]
    detail = httpx.get(f"{url}/api/studies/{reported.study_uid}", headers=bearer(READER)).json()
    (hrd,) = detail["analyses"]
    assert (hrd["job_key"], hrd["call"], hrd["demo"]) == ("hrd", outcome.call, True)
    assert hrd["triage"]["text"] == reported.report.triage.text
    assert hrd["qc_flags"] == list(outcome.qc_flags)
    (maps,) = detail["analysis_maps"]
    assert maps["maps"] == [f"/studies/{reported.study_uid}/hrd/heatmap-1.png"]
    png = httpx.get(f"{url}{maps['maps'][0]}", headers=bearer(READER))
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    for other in ("hrd/sr.dcm", "heatmap-1.png", "hrd/result.json"):
        gone = httpx.get(f"{url}/studies/{reported.study_uid}/{other}", headers=bearer(READER))
        assert gone.status_code == 404, other
    assert "SYNTHETIC" not in str(detail)  # no patient names in the API


def test_a_token_in_the_url_is_refused(service: tuple[str, Reported]) -> None:
    url, reported = service
    token = {"access_token": OPERATOR}
    obs_id = reported.report.ids.observation_identifier
    assert httpx.get(f"{url}/api/studies", params=token).status_code == 401
    assert httpx.get(f"{url}/fhir/Observation/{obs_id}", params=token).status_code == 401
    heatmap = f"{url}/studies/{reported.study_uid}/hrd/heatmap-1.png"
    assert httpx.get(heatmap, params=token).status_code == 401
    page = httpx.get(f"{url}/", params=token)
    assert page.status_code == 401 and "Authorization header" in page.json()["detail"]


def test_openapi_and_docs_need_a_token(service: tuple[str, Reported]) -> None:
    url, _ = service
    assert httpx.get(f"{url}/openapi.json").status_code == 401
    assert httpx.get(f"{url}/docs").status_code == 401
    spec = httpx.get(f"{url}/openapi.json", headers=bearer(READER)).json()
    assert "/api/studies" in spec["paths"] and "/fhir/Observation" in spec["paths"]
    docs = httpx.get(f"{url}/docs", headers=bearer(READER))
    assert docs.status_code == 200 and "/api/studies" in docs.text
    assert "cdn" not in docs.text.lower()  # nothing from outside the gateway


def test_metrics_can_require_a_token(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, http={**HTTP, "metrics_auth": True})
    catalog = Catalog(settings.catalog.url)
    app = create_app(catalog, Outbox(tmp_path / "o"), settings)
    try:
        with running(app) as url:
            assert httpx.get(f"{url}/metrics").status_code == 401
            assert httpx.get(f"{url}/metrics", headers=bearer(READER)).status_code == 200
            assert httpx.get(f"{url}/health").status_code == 200
    finally:
        catalog.close()


def test_without_a_token_nothing_is_served(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    catalog = Catalog(settings.catalog.url)
    app = create_app(catalog, Outbox(tmp_path / "o"), settings)
    try:
        with running(app) as url:
            assert httpx.get(f"{url}/api/studies").status_code == 503
            assert httpx.get(f"{url}/fhir/Observation/x").status_code == 503
            assert httpx.get(f"{url}/").status_code == 503
            assert httpx.get(f"{url}/health").status_code == 200
    finally:
        catalog.close()
