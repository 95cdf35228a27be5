"""FHIR search as R4 defines it, one test per row of the EHR side's table, with fhirpy.

Nineteen Observations of two patients and two codes, effective on nineteen days, are
stored as the report writer stores them; the endpoint is served over HTTP and searched
with fhirpy (a FHIR client written by others: it pages by following ``next`` links) and
with plain HTTP for what fhirpy does not phrase.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhirpy import SyncFHIRClient

from gateway.catalog import Catalog
from gateway.catalog.observations import ObservationStore
from gateway.outbox import Outbox
from gateway.web import create_app
from support.factories import instance_record
from support.gateway import make_settings

from .conftest import HTTP, READER, bearer, running

pytestmark = pytest.mark.integration

LOINC = "http://loinc.org"
CODES = ("107286-7", "85319-2")
PATIENTS = ("urn:pid|P-A", "urn:pid|P-B")
OBSERVATION_SYSTEM = "urn:ihgamp:observation"
N = 19
FIRST_DAY = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def _observation(index: int) -> tuple[str, dict[str, Any], tuple[str, str]]:
    system, value = PATIENTS[index % 2].split("|")
    identifiers = [{"system": OBSERVATION_SYSTEM, "value": f"key-{index}"}]
    if index == 7:  # an amended result: the identifier of the one it replaced comes first
        identifiers.insert(0, {"system": OBSERVATION_SYSTEM, "value": "key-replaced"})
    resource = {
        "resourceType": "Observation",
        "id": f"obs-{index}",
        "identifier": identifiers,
        "status": "amended" if index == 7 else "final",
        "code": {"coding": [{"system": LOINC, "code": CODES[index % 2]}]},
        "subject": {"type": "Patient", "identifier": {"system": system, "value": value}},
        "effectiveDateTime": (FIRST_DAY + dt.timedelta(days=index)).isoformat(),
        "device": {"reference": "Device/d-1"},
    }
    return f"1.2.826.{index}", resource, (LOINC, CODES[index % 2])


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp: Path = tmp_path_factory.mktemp("fhir-search")
    settings = make_settings(tmp, http=HTTP)
    catalog = Catalog(settings.catalog.url)
    store = ObservationStore(catalog)
    for index in range(N):
        study, resource, code = _observation(index)
        catalog.record_instance(
            instance_record(study, f"{study}.1", f"{study}.1.1"),
            None,
        )
        store.put(study, resource, code)
    app = create_app(catalog, Outbox(settings.storage.outbox_dir), settings)
    with running(app) as url:
        yield f"{url}/fhir"
    catalog.close()


def _search(base: str, kind: str = "Observation", **params: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/{kind}", params=params, headers=bearer(READER))
    assert response.status_code == 200, response.text
    Bundle.model_validate(response.json())
    body: dict[str, Any] = response.json()
    return body


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def _refused(base: str, status: int, headers: dict[str, str] | None = None, **params: str) -> str:
    response = httpx.get(
        f"{base}/Observation", params=params, headers={**bearer(READER), **(headers or {})}
    )
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return str(body["issue"][0]["diagnostics"])


def test_pages_have_total_and_links_and_fhirpy_fetches_them_all(fhir: str) -> None:
    first = _search(fhir, _count="2")
    assert first["total"] == N and len(first["entry"]) == 2
    relations = {link["relation"]: link["url"] for link in first["link"]}
    assert set(relations) == {"self", "next"}
    second = httpx.get(relations["next"], headers=bearer(READER)).json()
    assert {link["relation"] for link in second["link"]} == {"self", "next", "previous"}
    assert _ids(first).isdisjoint(_ids(second))
    client = SyncFHIRClient(fhir, authorization=f"Bearer {READER}")
    everything = client.resources("Observation").limit(2).fetch_all()
    assert sorted(r.id for r in everything) == sorted(f"obs-{i}" for i in range(N))
    last = _search(fhir, _count="5", _offset="15")
    assert len(last["entry"]) == 4 and "next" not in {link["relation"] for link in last["link"]}


def test_count_zero_gives_the_total_only(fhir: str) -> None:
    bundle = _search(fhir, _count="0", code=f"{LOINC}|{CODES[0]}")
    assert bundle["total"] == 10 and "entry" not in bundle


def test_comma_separated_codes_are_alternatives(fhir: str) -> None:
    both = ",".join(f"{LOINC}|{code}" for code in CODES)
    assert _search(fhir, code=both)["total"] == N
    assert _search(fhir, code=f"{LOINC}|{CODES[1]}")["total"] == 9
    assert _search(fhir, code=f"{CODES[1]}")["total"] == 9  # a code in any system
    assert _search(fhir, code=f"|{CODES[1]}")["total"] == 0  # only codes without a system


def test_patient_and_subject_by_identifier(fhir: str) -> None:
    for key in ("patient:identifier", "subject:identifier"):
        assert _search(fhir, **{key: PATIENTS[0]})["total"] == 10
        assert _search(fhir, **{key: PATIENTS[1]})["total"] == 9
    both = ",".join(PATIENTS)
    assert _search(fhir, **{"patient:identifier": both})["total"] == N
    client = SyncFHIRClient(fhir, authorization=f"Bearer {READER}")
    found = client.resources("Observation").search(**{"patient:identifier": PATIENTS[1]})
    assert len(found.fetch_all()) == 9
    # A plain reference cannot match a subject named by identifier: refused, not empty.
    assert ":identifier" in _refused(fhir, 400, patient="Patient/P-A")
    assert ":identifier" in _refused(fhir, 400, subject="Patient/P-A")


def test_date_prefixes_on_effective_date_time(fhir: str) -> None:
    day = (FIRST_DAY + dt.timedelta(days=10)).date().isoformat()  # obs-10's day
    expected = {"eq": 1, "ne": N - 1, "lt": 10, "eb": 10, "le": 11, "gt": N - 11}
    expected |= {"sa": N - 11, "ge": N - 10}
    for prefix, count in expected.items():
        assert _search(fhir, date=f"{prefix}{day}")["total"] == count, prefix
    assert _search(fhir, date=day)["total"] == 1  # no prefix: eq
    assert _search(fhir, date="2026-01")["total"] == N  # a month
    assert _search(fhir, date="2025")["total"] == 0  # a year
    moment = (FIRST_DAY + dt.timedelta(days=3)).isoformat()
    assert _ids(_search(fhir, date=moment)) == {"obs-3"}  # to the second
    ranged = httpx.get(  # repeated: both must hold
        f"{fhir}/Observation",
        params=[("date", "ge2026-01-05"), ("date", "lt2026-01-08")],
        headers=bearer(READER),
    ).json()
    assert _ids(ranged) == {"obs-4", "obs-5", "obs-6"}
    assert "prefix 'ap'" in _refused(fhir, 400, date="ap2026-01-01")
    assert "not a FHIR date" in _refused(fhir, 400, date="2026-1-5")
    assert "month must be in 1..12" in _refused(fhir, 400, date="2026-13-01")


def test_identifier_id_and_last_updated(fhir: str) -> None:
    for value in ("key-replaced", "key-7"):  # the amended Observation by either identifier
        assert _ids(_search(fhir, identifier=f"{OBSERVATION_SYSTEM}|{value}")) == {"obs-7"}
    assert _ids(_search(fhir, _id="obs-1,obs-2")) == {"obs-1", "obs-2"}
    hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat(timespec="seconds")
    assert _search(fhir, _lastUpdated=f"ge{hour_ago}")["total"] == N
    assert _search(fhir, _lastUpdated=f"lt{hour_ago}")["total"] == 0
    resource = _search(fhir, _id="obs-1")["entry"][0]["resource"]
    assert dt.datetime.fromisoformat(resource["meta"]["lastUpdated"]) > dt.datetime.fromisoformat(
        hour_ago
    )


def test_xml_is_not_acceptable_and_unknown_parameters_are_refused(fhir: str) -> None:
    assert "application/fhir+json" in _refused(fhir, 406, {"Accept": "application/fhir+xml"})
    _refused(fhir, 406, _format="xml")
    for path in ("metadata", "Observation/obs-1"):  # every route, not only searches
        response = httpx.get(
            f"{fhir}/{path}", headers={**bearer(READER), "Accept": "application/fhir+xml"}
        )
        assert response.status_code == 406 and response.json()["resourceType"] == "OperationOutcome"
    ok = httpx.get(
        f"{fhir}/Observation",
        headers={**bearer(READER), "Accept": "application/fhir+xml;q=0.9, */*;q=0.1"},
    )
    assert ok.status_code == 200
    assert "_sort" in _refused(fhir, 400, _sort="date")
    assert "_include" in _refused(fhir, 400, _include="Observation:subject")
    assert "_count" in _refused(fhir, 400, _count="-1")
