"""Every bad parameter gets a one-line 4xx (OperationOutcome for FHIR), never a 500 or a
traceback in the log; caps cannot be bypassed; uvicorn logs in the gateway's format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.logs import JsonFormatter
from gateway.web import create_app
from gateway.web.api import MAX_STUDIES
from gateway.web.fhir import MAX_COUNT
from support.reports import Reported

from .conftest import OPERATOR, READER, bearer, running

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def log_lines() -> Iterator[io.StringIO]:
    """Everything logged while the module runs, formatted as the gateway does (JSON)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


@pytest.fixture(scope="module")
def url(reported: Reported, log_lines: io.StringIO) -> Iterator[str]:
    app = create_app(reported.catalog, reported.outbox, reported.settings)
    with running(app) as base:
        yield base


def _fhir_error(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    text = body["issue"][0]["diagnostics"]
    assert "\n" not in text
    return str(text)


def _api_error(response: httpx.Response, status: int = 422) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail, detail
    return detail


@pytest.mark.parametrize(
    ("count", "phrase"),
    [
        ("abc", "_count must be a non-negative integer"),
        ("1e20", "_count must be a non-negative integer"),
        ("-1", "_count must be a non-negative integer"),
        ("1.5", "_count must be a non-negative integer"),
        ("", "_count must be a non-negative integer"),
    ],
)
def test_fhir_count_is_validated(url: str, count: str, phrase: str) -> None:
    for kind, search in (
        ("Observation", {"code": "http://loinc.org|107286-7"}),
        ("Device", {"identifier": "urn:ihgamp:device|x"}),
        ("Provenance", {"target": "Observation/x"}),
    ):
        response = httpx.get(
            f"{url}/fhir/{kind}", params={**search, "_count": count}, headers=bearer(READER)
        )
        assert phrase in _fhir_error(response)


def test_fhir_refuses_repeated_unknown_and_malformed_parameters(url: str) -> None:
    headers = bearer(READER)
    repeated = httpx.get(f"{url}/fhir/Observation?_count=1&_count=2", headers=headers)
    assert "more than once" in _fhir_error(repeated)
    unknown = httpx.get(f"{url}/fhir/Observation/abc", params={"x": "1"}, headers=headers)
    assert "unsupported parameters" in _fhir_error(unknown)
    bad_id = httpx.get(f"{url}/fhir/Observation/a_b", headers=headers)
    assert "id must be" in _fhir_error(bad_id)
    fmt = httpx.get(f"{url}/fhir/Observation", params={"_format": "xml"}, headers=headers)
    assert "only JSON" in _fhir_error(fmt, 406)
    target = httpx.get(f"{url}/fhir/Provenance", params={"target": "Patient/1"}, headers=headers)
    assert "Observation/<id>" in _fhir_error(target)
    long = httpx.get(f"{url}/fhir/Observation", params={"code": "x" * 300}, headers=headers)
    assert "longer than" in _fhir_error(long)
    patient = httpx.get(f"{url}/fhir/Patient/1", headers=headers)
    _fhir_error(patient, 404)


def test_a_huge_count_is_capped(url: str) -> None:
    response = httpx.get(
        f"{url}/fhir/Observation", params={"_count": "9" * 40}, headers=bearer(READER)
    )
    assert response.status_code == 200 and len(response.json()["entry"]) <= MAX_COUNT


@pytest.mark.parametrize(
    ("query", "phrase"),
    [
        ("limit=-1", "limit: Input should be greater than or equal to 1"),
        ("limit=0", "limit: Input should be greater than or equal to 1"),
        ("limit=1e20", "limit: Input should be a valid integer"),
        ("limit=abc", "limit: Input should be a valid integer"),
        (f"limit={MAX_STUDIES + 1}", f"less than or equal to {MAX_STUDIES}"),
        ("state=bogus", "state: Input should be"),
        ("limit=1&limit=2", "more than once"),
        ("limits=1", "unknown query parameters: limits"),
    ],
)
def test_api_parameters_are_validated(url: str, query: str, phrase: str) -> None:
    response = httpx.get(f"{url}/api/studies?{query}", headers=bearer(READER))
    assert phrase in _api_error(response)


def test_api_path_parameters_are_validated(url: str) -> None:
    headers = bearer(READER)
    assert "study_uid" in _api_error(httpx.get(f"{url}/api/studies/1.2.x", headers=headers))
    assert "study_uid" in _api_error(httpx.get(f"{url}/api/studies/{'1' * 65}", headers=headers))
    _api_error(httpx.get(f"{url}/api/studies/1.2.3", headers=headers), 404)
    _api_error(httpx.get(f"{url}/studies/1.2.3/..%2Fsr.dcm", headers=headers), 404)
    _api_error(httpx.get(f"{url}/api/audit?limit=-1", headers=bearer(READER)), 403)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(["limit", "state", "_count", "code", "target", "identifier"]),
    value=st.text(max_size=40),
    path=st.sampled_from(
        [
            "/api/studies",
            "/fhir/Observation",
            "/fhir/Device",
            "/fhir/Provenance",
            "/api/studies/1.2.3",
            "/fhir/Device/x",
        ]
    ),
)
def test_no_parameter_value_makes_a_server_error(
    url: str, name: str, value: str, path: str
) -> None:
    response = httpx.get(f"{url}{path}", params={name: value}, headers=bearer(READER))
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code >= 400:
        text = body["issue"][0]["diagnostics"] if path.startswith("/fhir") else body["detail"]
        assert "\n" not in text


def test_logs_are_json_without_tracebacks_or_query_values(url: str, log_lines: io.StringIO) -> None:
    secret_patient = "PATIENT-IN-QUERY-42"
    httpx.get(
        f"{url}/fhir/Observation",
        params={"subject:identifier": f"urn:x|{secret_patient}", "_count": "abc"},
        headers=bearer(READER),
    )
    httpx.get(
        f"{url}/fhir/Observation",
        params={"subject:identifier": f"urn:x|{secret_patient}"},
        headers=bearer(READER),
    )
    records = [json.loads(line) for line in log_lines.getvalue().splitlines() if line]
    # The server's records (this test's own HTTP client logs its URLs, queries included).
    records = [r for r in records if r["logger"].startswith(("gateway", "uvicorn"))]
    assert records, "nothing was logged"
    assert not [r for r in records if "exception" in r or "Traceback" in r["message"]]
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert access and all(r["message"] == "HTTP request" for r in access)
    assert {"/fhir/Observation", "/api/studies"} <= {r["path"] for r in access}
    assert secret_patient not in json.dumps(records)
    assert not any("?" in r["path"] for r in access)


def test_pull_requests_that_are_not_what_the_api_takes_get_4xx_never_500(
    reported: Reported, tmp_path: Path
) -> None:
    """The red-team findings: a 23-digit pull id and a deeply nested body gave 500s;
    control characters and text/plain bodies were taken."""
    from gateway.retrieve.pulls import PullDesk
    from support.gateway import make_settings

    pacs = [{"name": "orthanc", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": 4242}]
    settings = make_settings(tmp_path, http=dict(reported.settings.http), pacs=pacs)
    desk = PullDesk(reported.catalog, settings)
    app = create_app(
        reported.catalog, reported.outbox, settings, pull=desk.request, pull_status=desk.get
    )
    headers = {**bearer(OPERATOR), "content-type": "application/json"}
    with running(app) as base:
        assert (
            httpx.get(f"{base}/api/pull/99999999999999999999999", headers=headers).status_code
            == 422
        )
        nested = "[" * 2000 + "]" * 2000
        assert httpx.post(f"{base}/api/pull", headers=headers, content=nested).status_code == 400
        control = json.dumps({"accession_number": "ACC\x00\x07"})
        refused = httpx.post(f"{base}/api/pull", headers=headers, content=control)
        assert refused.status_code == 400 and "control characters" in refused.text
        plain = {**headers, "content-type": "text/plain"}
        body = json.dumps({"accession_number": "ACC-1"})
        assert httpx.post(f"{base}/api/pull", headers=plain, content=body).status_code == 415
        assert httpx.post(f"{base}/api/pull", headers=headers, content=body).status_code == 202
