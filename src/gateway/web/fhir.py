"""The read-only FHIR R4 endpoint: Observation, Device, Provenance, ImagingStudy.

What is served is declared once, in :data:`SERVED`; the routes and the
CapabilityStatement are both built from it, so the statement claims exactly what the
routes do. Every query parameter is checked: an unknown, repeated or malformed one is
answered with ``400`` and an OperationOutcome, never with a server error.

References between the served resources are relative (``Device/<id>``), so they resolve
against this endpoint's base (see :func:`ihgamp_core.report.fhir.resolved_resources`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ihgamp_core import __version__

from ..catalog import Catalog
from ..catalog.deliveries import ObservationStore
from ..catalog.fhir_resources import FhirResourceStore, ServedType
from ..catalog.schema import AccessAction
from .auth import Authenticator, Principal

__all__ = ["FHIR_JSON", "MAX_COUNT", "SERVED", "FhirError", "FhirResponse", "fhir_router"]

FHIR_JSON = "application/fhir+json"
#: The most entries one search answers (a larger ``_count`` is lowered to it).
MAX_COUNT = 500
DEFAULT_COUNT = 100
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir"}
_RESULT_PARAMS = ("_count", "_format")
_MAX_VALUE = 256


class FhirResponse(JSONResponse):
    """JSON with the FHIR media type."""

    media_type = FHIR_JSON


class FhirError(Exception):
    """A FHIR request answered with an OperationOutcome.

    Parameters
    ----------
    status : int
        HTTP status.
    code : str
        OperationOutcome issue type (``invalid``, ``not-supported``, ``not-found``...).
    text : str
        One-line diagnostics.
    """

    def __init__(self, status: int, code: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.code = code
        self.text = text


def operation_outcome(status: int, code: str, text: str) -> FhirResponse:
    """An OperationOutcome response with one error issue."""
    return FhirResponse(
        status_code=status,
        content={
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}],
        },
    )


@dataclass(frozen=True)
class SearchParam:
    """A search parameter a served type supports."""

    name: str
    type: str
    documentation: str


@dataclass(frozen=True)
class Served:
    """A served resource type: always ``read``; ``search-type`` when it has parameters."""

    type: str
    search: tuple[SearchParam, ...] = ()

    @property
    def interactions(self) -> tuple[str, ...]:
        """FHIR interaction codes."""
        return ("read", "search-type") if self.search else ("read",)


SERVED: tuple[Served, ...] = (
    Served(
        "Observation",
        (
            SearchParam("subject:identifier", "token", "Patient identifier, system|value"),
            SearchParam("code", "token", "http://loinc.org|107286-7"),
        ),
    ),
    Served("Device", (SearchParam("identifier", "token", "urn:ihgamp:device|<digest>"),)),
    Served("Provenance", (SearchParam("target", "reference", "Observation/<id>"),)),
    Served("ImagingStudy"),
)


def _token(text: str) -> tuple[str | None, str | None]:
    """Split a FHIR token search value ``system|code`` (either side may be empty)."""
    if "|" in text:
        system, value = text.split("|", 1)
        return (system or None), (value or None)
    return None, text or None


def _params(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query parameters, each at most once, all of them known."""
    items = request.query_params.multi_items()
    names = [name for name, _ in items]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise FhirError(400, "not-supported", f"unsupported parameters: {unknown}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise FhirError(400, "invalid", f"parameters given more than once: {repeated}")
    params = dict(items)
    for name, value in params.items():
        if len(value) > _MAX_VALUE:
            raise FhirError(400, "invalid", f"{name}: longer than {_MAX_VALUE} characters")
    fmt = params.get("_format")
    if fmt is not None and fmt not in _FORMATS:
        raise FhirError(400, "not-supported", "_format: only JSON is served")
    return params


def _count(params: dict[str, str]) -> int:
    """``_count``: a positive integer, lowered to :data:`MAX_COUNT`."""
    raw = params.get("_count")
    if raw is None:
        return DEFAULT_COUNT
    if not raw.isascii() or not raw.isdigit() or int(raw[:9]) == 0:
        raise FhirError(400, "invalid", f"_count must be a positive integer, not {raw[:20]!r}")
    return MAX_COUNT if len(raw) > 9 else min(int(raw), MAX_COUNT)


def _checked_id(kind: str, resource_id: str) -> str:
    if not _ID_RE.match(resource_id):
        raise FhirError(400, "invalid", f"{kind} id must be 1-64 of A-Z a-z 0-9 - .")
    return resource_id


def capability_statement(base: str) -> dict[str, Any]:
    """The CapabilityStatement of this endpoint (built from :data:`SERVED`)."""
    security = "http://terminology.hl7.org/CodeSystem/restful-security-service"
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": dt.date.today().isoformat(),
        "kind": "instance",
        "software": {"name": "IHGAMP pathology gateway", "version": __version__},
        "implementation": {"description": "IHGAMP analysis results (read-only)", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [{"coding": [{"system": security, "code": "OAuth"}]}],
                    "description": (
                        "Bearer token in the Authorization header (named static tokens, "
                        "http.tokens); /metadata needs none"
                    ),
                },
                "resource": [
                    {
                        "type": served.type,
                        "interaction": [{"code": code} for code in served.interactions],
                        **(
                            {
                                "searchParam": [
                                    {
                                        "name": p.name,
                                        "type": p.type,
                                        "documentation": p.documentation,
                                    }
                                    for p in served.search
                                ]
                            }
                            if served.search
                            else {}
                        ),
                    }
                    for served in SERVED
                ],
            }
        ],
    }


def fhir_router(catalog: Catalog, auth: Authenticator) -> APIRouter:
    """The ``/fhir`` routes (reads need a bearer token; ``/fhir/metadata`` does not)."""
    router = APIRouter(prefix="/fhir")
    observations = ObservationStore(catalog)
    resources = FhirResourceStore(catalog)
    reader = Depends(auth.bearer)

    def base_of(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/fhir"

    def searchset(
        request: Request, principal: Principal, kind: str, found: list[dict[str, Any]], limit: int
    ) -> FhirResponse:
        auth.audit(
            request, principal, AccessAction.SEARCH, kind, [f"{kind}/{r['id']}" for r in found]
        )
        base = base_of(request)
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "link": [{"relation": "self", "url": str(request.url)}],
            "entry": [
                {
                    "fullUrl": f"{base}/{kind}/{r['id']}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in found
            ],
        }
        if len(found) < limit:  # all matches are here: the total is known
            bundle["total"] = len(found)
        return FhirResponse(bundle)

    @router.get("/metadata")
    def capability(request: Request) -> FhirResponse:
        _params(request, ("_format", "mode"))
        return FhirResponse(capability_statement(base_of(request)))

    def add_read(kind: str, load: Callable[[str], dict[str, Any] | None]) -> None:
        def read(resource_id: str, request: Request, principal: Principal = reader) -> Any:
            _params(request, ("_format",))
            resource = load(_checked_id(kind, resource_id))
            if resource is None:
                raise FhirError(404, "not-found", f"{kind}/{resource_id} not found")
            auth.audit(request, principal, AccessAction.READ, kind, [f"{kind}/{resource_id}"])
            return FhirResponse(resource)

        router.add_api_route(f"/{kind}/{{resource_id}}", read, methods=["GET"], name=f"read {kind}")

    def loader(kind: ServedType) -> Callable[[str], dict[str, Any] | None]:
        return lambda resource_id: resources.get(kind, resource_id)

    add_read("Observation", observations.get)
    for served_type in ServedType:
        add_read(str(served_type), loader(served_type))

    @router.get("/Observation")
    def search_observation(request: Request, principal: Principal = reader) -> FhirResponse:
        params = _params(request, ("subject:identifier", "code", *_RESULT_PARAMS))
        limit = _count(params)
        system = value = code_system = code = None
        if "subject:identifier" in params:
            system, value = _token(params["subject:identifier"])
        if "code" in params:
            code_system, code = _token(params["code"])
        found = observations.search(system, value, code_system, code, limit=limit)
        return searchset(request, principal, "Observation", found, limit)

    @router.get("/Device")
    def search_device(request: Request, principal: Principal = reader) -> FhirResponse:
        params = _params(request, ("identifier", *_RESULT_PARAMS))
        limit = _count(params)
        if "identifier" not in params:
            raise FhirError(400, "required", "search Device by identifier=system|value")
        system, value = _token(params["identifier"])
        if system is None or value is None:
            raise FhirError(400, "invalid", "identifier: give system|value")
        found = resources.search(ServedType.DEVICE, f"{system}|{value}", limit)
        return searchset(request, principal, "Device", found, limit)

    @router.get("/Provenance")
    def search_provenance(request: Request, principal: Principal = reader) -> FhirResponse:
        params = _params(request, ("target", *_RESULT_PARAMS))
        limit = _count(params)
        target = params.get("target")
        if target is None:
            raise FhirError(400, "required", "search Provenance by target=Observation/<id>")
        base = base_of(request) + "/"
        relative = target[len(base) :] if target.startswith(base) else target
        kind, _, target_id = relative.partition("/")
        if kind != "Observation" or not _ID_RE.match(target_id):
            raise FhirError(400, "invalid", "target: give Observation/<id>")
        found = resources.search(ServedType.PROVENANCE, relative, limit)
        return searchset(request, principal, "Provenance", found, limit)

    return router
