"""Every FHIR resource the gateway emits passes validators written by others.

The HRD and HER2 sample cases' reports (first issue and superseding issue, as in the
regression test) give the transaction Bundles the gateway posts to an EHR, each resource
in them, and the same resources as the gateway's FHIR endpoint serves them (references
resolved, ImagingStudy added). Each is checked by the HL7 FHIR R4 JSON schema and by
Medplum's validator (:mod:`support.fhir_validation`). Findings the specification
allows are listed in ``docs/reports.md``; the test keeps that list exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ihgamp_core.her2.model import load_her2
from ihgamp_core.her2.samples import build_her2_samples
from ihgamp_core.hrd.engine import Engine
from ihgamp_core.report.fhir import build_imaging_study, default_patient_system, resolved_resources
from support import golden
from support.fhir_validation import validate

pytestmark = pytest.mark.slow


def _emitted(issued: dict[str, golden.Issued]) -> list[tuple[str, dict[str, Any]]]:
    """(where, resource): each Bundle, its entries, and the served resources."""
    out = []
    for case, (report, context) in sorted(issued.items()):
        if report.bundle is None:
            continue
        bundle = report.bundle.model_dump(mode="json", exclude_none=True)
        out.append((f"{case} Bundle", bundle))
        out += [(f"{case} Bundle entry", e["resource"]) for e in bundle["entry"]]
        study = build_imaging_study(context, default_patient_system)
        served = resolved_resources(report.bundle, report.ids, study, report.observation_identifier)
        out += [(f"{case} served", r) for r in served]
    return out


@pytest.fixture(scope="module")
def issued(
    samples_root: Path, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, golden.Issued]:
    """The HRD and HER2 sample cases' reports, first issue and superseding issue."""
    her2_root = tmp_path_factory.mktemp("her2-validate")
    build_her2_samples(her2_root)
    model = load_her2(golden.REPO / "sample_data" / "her2_demo" / "her2-demo.safetensors")
    return {
        **golden.hrd_reports(samples_root, engine, golden.load("hrd-results.json")),
        **golden.her2_reports(her2_root, model, golden.load("her2-results.json")),
    }


def test_every_emitted_resource_passes_the_fhir_schema_and_medplum(
    issued: dict[str, golden.Issued],
) -> None:
    emitted = _emitted(issued)
    assert {r["resourceType"] for _, r in emitted} == {
        "Bundle", "Observation", "Device", "Provenance", "ImagingStudy",
    }  # fmt: skip
    findings = validate([r for _, r in emitted])
    assert len(findings) == len(emitted)
    for (where, resource), found in zip(emitted, findings, strict=True):
        label = f"{where} {resource['resourceType']}/{resource.get('id')}"
        assert found["schema"] == [], label
        assert [i for i in found["medplum"] if i["severity"] != "warning"] == [], label
        allowed = _bundle_urns(resource) if where.endswith("Bundle") else set()
        if where.endswith("Bundle entry"):
            allowed = next(_bundle_urns(r) for w, r in emitted if w == where.replace(" entry", ""))
        for issue in found["medplum"]:  # docs/reports.md: transaction-internal references
            got = issue["text"].removeprefix('Invalid reference: got "').split('"', 1)[0]
            assert got in allowed, (label, issue)


def _bundle_urns(bundle: dict[str, Any]) -> set[str]:
    """The ``urn:uuid`` full URLs of a transaction Bundle's entries (references to them
    resolve inside the transaction; Medplum, which is not bundle-aware, warns on them)."""
    if bundle.get("resourceType") != "Bundle":
        return set()
    return {e["fullUrl"] for e in bundle["entry"] if e["fullUrl"].startswith("urn:uuid:")}


def _codings(node: Any) -> list[tuple[str, str, str | None]]:
    if isinstance(node, dict):
        found = []
        if isinstance(node.get("system"), str) and isinstance(node.get("code"), str):
            found.append((node["system"], node["code"], node.get("display")))
        return found + [c for v in node.values() for c in _codings(v)]
    if isinstance(node, list):
        return [c for item in node for c in _codings(item)]
    return []


def test_every_standard_code_emitted_is_in_the_repository_list(
    issued: dict[str, golden.Issued],
) -> None:
    """LOINC, HL7 and UCUM codes (what the validators do not check) against a kept list."""
    known = json.loads((golden.REPO / "tests" / "data" / "terminology.json").read_text())
    seen = set()
    for _, resource in _emitted(issued):
        for system, code, display in _codings(resource):
            if system in known:
                assert code in known[system], (system, code)
                expected = known[system][code]
                assert display is None or expected is None or display == expected, (code, display)
                seen.add((system, code))
    assert {("http://loinc.org", "107286-7"), ("http://loinc.org", "85319-2")} <= seen


def test_the_validators_find_what_is_wrong() -> None:
    """A status outside its required value set (the schema's enumerations), an unknown
    element (both)."""
    status = {"resourceType": "Observation", "status": "probably", "code": {"text": "x"}}
    extra = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "colour": 1}
    bad_status, unknown = validate([status, extra])
    assert any(".status" in e for e in bad_status["schema"]), bad_status
    assert any("additional properties" in e for e in unknown["schema"]), unknown
    assert any(i["severity"] == "error" and "colour" in i["text"] for i in unknown["medplum"])
