"""The FHIR endpoint: Device, Provenance and ImagingStudy served, every reference
resolves against the endpoint's base, and the CapabilityStatement claims exactly what
works (checked against the routes and by exercising every advertised interaction)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

from gateway.web import create_app
from support.reports import Reported

from .conftest import READER, bearer, running

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODELS: dict[str, Any] = {
    "Observation": Observation,
    "Device": Device,
    "Provenance": Provenance,
    "ImagingStudy": ImagingStudy,
}


@pytest.fixture(scope="module")
def served(reported: Reported) -> Iterator[tuple[str, Reported, Any]]:
    app = create_app(reported.catalog, reported.outbox, reported.settings)
    with running(app) as url:
        yield f"{url}/fhir", reported, app


def _get(url: str, **params: str) -> dict[str, Any]:
    response = httpx.get(url, params=params, headers=bearer(READER))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    return body


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [r for value in node.values() for r in _references(value)]
    if isinstance(node, list):
        return [r for item in node for r in _references(item)]
    return []


def test_device_provenance_and_imaging_study_are_served_and_valid(
    served: tuple[str, Reported, Any],
) -> None:
    base, reported, _ = served
    ids = reported.report.ids
    observation = _get(f"{base}/Observation/{ids.observation_identifier}")
    Observation.model_validate(observation)
    assert observation["device"]["reference"] == f"Device/{ids.device_identifier}"
    derived = observation["derivedFrom"][0]
    assert derived["reference"] == f"ImagingStudy/{reported.study_uid}"
    assert derived["identifier"]["value"] == f"urn:oid:{reported.study_uid}"

    device = _get(f"{base}/Device/{ids.device_identifier}")
    Device.model_validate(device)
    assert device["deviceName"][0]["name"] == reported.result.model.display_name

    study = _get(f"{base}/ImagingStudy/{reported.study_uid}")
    ImagingStudy.model_validate(study)
    assert study["subject"]["identifier"] == observation["subject"]["identifier"]
    assert {s["uid"] for s in study["series"]} == {
        s.info.series_instance_uid for s in reported.result.slides
    }

    found = _get(f"{base}/Provenance", target=f"Observation/{ids.observation_identifier}")
    bundle = Bundle.model_validate(found)
    assert bundle.total == 1
    provenance = found["entry"][0]["resource"]
    Provenance.model_validate(provenance)
    assert provenance["target"] == [{"reference": f"Observation/{ids.observation_identifier}"}]
    assert provenance["agent"][0]["who"]["reference"] == f"Device/{ids.device_identifier}"
    # The full URL of the target works as well as the relative one.
    again = _get(f"{base}/Provenance", target=f"{base}/Observation/{ids.observation_identifier}")
    assert again["entry"][0]["resource"]["id"] == provenance["id"]
    assert _get(f"{base}/Provenance/{provenance['id']}") == provenance


def test_every_reference_resolves_against_the_fhir_base(
    served: tuple[str, Reported, Any],
) -> None:
    base, reported, _ = served
    ids = reported.report.ids
    start = [
        f"Observation/{ids.observation_identifier}",
        f"Provenance/{ids.observation_identifier}",
    ]
    seen: set[str] = set()
    pending = list(start)
    while pending:
        reference = pending.pop()
        if reference in seen:
            continue
        seen.add(reference)
        assert not reference.startswith("urn:"), reference  # no bundle-internal references
        kind, _, _ = reference.partition("/")
        resource = _get(f"{base}/{reference}")
        MODELS[kind].model_validate(resource)
        pending.extend(_references(resource))
    assert {r.split("/")[0] for r in seen} == set(MODELS)


def test_observations_come_with_their_device_and_provenance_in_one_round_trip(
    served: tuple[str, Reported, Any],
) -> None:
    base, reported, _ = served
    ids = reported.report.ids
    bundle = _get(
        f"{base}/Observation",
        _id=ids.observation_identifier,
        _include="Observation:device",
        _revinclude="Provenance:target",
    )
    Bundle.model_validate(bundle)
    assert bundle["total"] == 1  # the matches only
    found = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]}
    assert found == {("Observation", "match"), ("Device", "include"), ("Provenance", "include")}
    statement = httpx.get(f"{base}/metadata").json()
    observation = _advertised(statement)["Observation"]
    assert observation["searchInclude"] == ["Observation:device"]
    assert observation["searchRevInclude"] == ["Provenance:target"]


def _advertised(statement: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["type"]: r for r in statement["rest"][0]["resource"]}


def test_the_capability_statement_is_valid_and_matches_the_routes(
    served: tuple[str, Reported, Any],
) -> None:
    base, _, app = served
    statement = httpx.get(f"{base}/metadata").json()
    CapabilityStatement.model_validate(statement)
    claimed = {
        (kind, i["code"]) for kind, r in _advertised(statement).items() for i in r["interaction"]
    }
    routed = set()
    for path, operations in app.openapi()["paths"].items():  # every route the app serves
        if not path.startswith("/fhir/") or path == "/fhir/metadata":
            continue
        assert set(operations) == {"get"}, (path, operations)  # read-only
        parts = path.removeprefix("/fhir/").split("/")
        routed.add((parts[0], "read" if len(parts) == 2 else "search-type"))
    assert claimed == routed


def test_every_advertised_interaction_works(served: tuple[str, Reported, Any]) -> None:
    base, reported, _ = served
    ids = reported.report.ids
    known_ids = {
        "Observation": ids.observation_identifier,
        "Device": ids.device_identifier,
        "Provenance": ids.observation_identifier,
        "ImagingStudy": reported.study_uid,
    }
    patient = "urn:ihgamp:issuer:IHGAMP-DEMO|SYN-0001"
    search_values = {  # (type, advertised name): (query parameter, a value that finds it)
        ("Observation", "_id"): ("_id", ids.observation_identifier),
        ("Observation", "_lastUpdated"): ("_lastUpdated", "ge2000-01-01"),
        ("Observation", "identifier"): (
            "identifier",
            f"urn:ihgamp:observation|{ids.observation_identifier}",
        ),
        ("Observation", "code"): ("code", "http://loinc.org|107286-7"),
        ("Observation", "date"): ("date", "ge2000-01-01"),
        ("Observation", "subject"): ("subject:identifier", patient),
        ("Observation", "patient"): ("patient:identifier", patient),
        ("Device", "identifier"): ("identifier", f"urn:ihgamp:device|{ids.device_identifier}"),
        ("Provenance", "target"): ("target", f"Observation/{ids.observation_identifier}"),
    }
    statement = httpx.get(f"{base}/metadata").json()
    exercised = set()
    for kind, resource in _advertised(statement).items():
        for interaction in (i["code"] for i in resource["interaction"]):
            if interaction == "read":
                body = _get(f"{base}/{kind}/{known_ids[kind]}")
                MODELS[kind].model_validate(body)
            else:
                assert interaction == "search-type", interaction
                for param in resource["searchParam"]:
                    key, value = search_values[(kind, param["name"])]
                    bundle = _get(f"{base}/{kind}", **{key: value})
                    Bundle.model_validate(bundle)
                    assert [e["resource"]["id"] for e in bundle["entry"]] == [known_ids[kind]]
                    exercised.add((kind, param["name"]))
    assert exercised == set(search_values)


def test_what_is_not_advertised_is_not_served(served: tuple[str, Reported, Any]) -> None:
    base, _, _ = served
    statement = httpx.get(f"{base}/metadata").json()
    advertised = _advertised(statement)
    for kind in ("Patient", "DiagnosticReport", "Specimen"):
        assert kind not in advertised
        response = httpx.get(f"{base}/{kind}/1", headers=bearer(READER))
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"
    assert "search-type" not in {i["code"] for i in advertised["ImagingStudy"]["interaction"]}
    search = httpx.get(f"{base}/ImagingStudy", headers=bearer(READER))
    assert search.status_code in (404, 405)
    write = httpx.post(f"{base}/Observation", json={}, headers=bearer(READER))
    assert write.status_code == 405 and write.json()["resourceType"] == "OperationOutcome"
    for kind, resource in advertised.items():
        names = {p["name"] for p in resource.get("searchParam", [])}
        if "search-type" in {i["code"] for i in resource["interaction"]}:
            response = httpx.get(f"{base}/{kind}", params={"_sort": "x"}, headers=bearer(READER))
            assert "_sort" not in names and response.status_code == 400
