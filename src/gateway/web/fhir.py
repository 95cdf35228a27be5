"""The read-only FHIR R4 endpoint: Observation, Device, Provenance, ImagingStudy.

What is served is declared once, in :data:`SERVED`; the routes and the
CapabilityStatement are both built from it, so the statement claims exactly what the
routes do. Every query parameter is checked: an unknown, repeated or malformed one is
answered with ``400`` and an OperationOutcome, never with a server error or a silently
empty result; a client that accepts only XML gets ``406``.

Searches answer searchset Bundles as FHIR R4 defines them: ``total``, ``self`` /
``next`` / ``previous`` links (``_count``, ``_offset``; ``_count=0`` counts only), values
of one parameter separated by commas are alternatives, and Observation searches take
``_include=Observation:device`` and ``_revinclude=Provenance:target`` (value syntax:
:mod:`.fhir_search`).

References between the served resources are relative (``Device/<id>``), so they resolve
against this endpoint's base (see :func:`ihgamp_core.report.fhir.resolved_resources`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ihgamp_core import __version__

from ..catalog import Catalog
from ..catalog.fhir_resources import FhirResourceStore, ServedType
from ..catalog.observations import ObservationQuery, ObservationStore, SearchPage, Token
from ..catalog.schema import AccessAction
from .auth import Authenticator, Principal
from .fhir_search import MAX_COUNT, Page, SearchValueError, date_bounds, page, tokens

__all__ = ["FHIR_JSON", "MAX_COUNT", "SERVED", "FhirError", "FhirResponse", "fhir_router"]

FHIR_JSON = "application/fhir+json"
_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir"}
_ACCEPTED = {"*/*", "application/*", *_FORMATS}
_RESULT_PARAMS = ("_count", "_offset", "_format")
_MAX_VALUE = 256
#: Parameters that may be given more than once (each occurrence must match: AND).
_REPEATABLE = ("date", "_lastUpdated")
_INCLUDE = "Observation:device"
_REVINCLUDE = "Provenance:target"


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
    """A search parameter a served type supports.

    ``modifier`` names the one modifier a reference parameter is searched with
    (``subject:identifier``); the CapabilityStatement says so in its documentation.
    """

    name: str
    type: str
    documentation: str
    modifier: str | None = None

    @property
    def key(self) -> str:
        """The query parameter as a client writes it."""
        return f"{self.name}:{self.modifier}" if self.modifier else self.name


@dataclass(frozen=True)
class Served:
    """A served resource type: always ``read``; ``search-type`` when it has parameters."""

    type: str
    search: tuple[SearchParam, ...] = ()
    includes: tuple[str, ...] = ()
    revincludes: tuple[str, ...] = ()

    @property
    def interactions(self) -> tuple[str, ...]:
        """FHIR interaction codes."""
        return ("read", "search-type") if self.search else ("read",)


_BY_IDENTIFIER = (
    "{0}: searched by identifier only, as {0}:identifier=system|value (the patient's "
    "identifier: the DICOM Patient ID and its issuer); subjects are logical references by "
    "identifier and no Patient resources are served"
)

SERVED: tuple[Served, ...] = (
    Served(
        "Observation",
        (
            SearchParam("_id", "token", "Observation id"),
            SearchParam("_lastUpdated", "date", "prefix eq ne lt le gt ge sa eb; repeatable"),
            SearchParam(
                "identifier",
                "token",
                "urn:ihgamp:observation|<key> (either of an amended Observation's identifiers)",
            ),
            SearchParam("code", "token", "http://loinc.org|107286-7"),
            SearchParam(
                "date", "date", "effectiveDateTime; prefix eq ne lt le gt ge sa eb; repeatable"
            ),
            SearchParam("subject", "reference", _BY_IDENTIFIER.format("subject"), "identifier"),
            SearchParam("patient", "reference", _BY_IDENTIFIER.format("patient"), "identifier"),
        ),
        includes=(_INCLUDE,),
        revincludes=(_REVINCLUDE,),
    ),
    Served("Device", (SearchParam("identifier", "token", "urn:ihgamp:device|<digest>"),)),
    Served("Provenance", (SearchParam("target", "reference", "Observation/<id>"),)),
    Served("ImagingStudy"),
)


def _params(
    request: Request, allowed: Sequence[str], repeatable: Sequence[str] = ()
) -> dict[str, list[str]]:
    """The query parameters (all known; only ``repeatable`` ones more than once)."""
    items = request.query_params.multi_items()
    names = [name for name, _ in items]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise FhirError(400, "not-supported", f"unsupported parameters: {unknown}")
    repeated = sorted({n for n in names if names.count(n) > 1 and n not in repeatable})
    if repeated:
        raise FhirError(400, "invalid", f"parameters given more than once: {repeated}")
    params: dict[str, list[str]] = {}
    for name, value in items:
        if len(value) > _MAX_VALUE:
            raise FhirError(400, "invalid", f"{name}: longer than {_MAX_VALUE} characters")
        params.setdefault(name, []).append(value)
    fmt = params.get("_format", [None])[0]
    if fmt is not None and fmt not in _FORMATS:
        raise FhirError(406, "not-supported", "_format: only JSON (application/fhir+json)")
    return params


def _acceptable(request: Request) -> None:
    """Refuse (``406``) a client whose ``Accept`` header rules out JSON (every route)."""
    header = request.headers.get("accept")
    if not header:
        return
    ranges = {part.split(";", 1)[0].strip().lower() for part in header.split(",")}
    if not ranges & _ACCEPTED:
        raise FhirError(406, "not-supported", "only application/fhir+json is served")


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return None if values is None else values[0]


@contextmanager
def _search_syntax() -> Iterator[None]:
    """A malformed search value is a ``400`` OperationOutcome naming the parameter."""
    try:
        yield
    except SearchValueError as exc:
        raise FhirError(400, "invalid", str(exc)) from None


def _tokens(params: dict[str, list[str]], *names: str) -> tuple[Token, ...]:
    """Every token of the named parameters (each value's comma-separated alternatives)."""
    return tuple(t for name in names for value in params.get(name, []) for t in tokens(name, value))


def _page(params: dict[str, list[str]]) -> Page:
    with _search_syntax():
        return page(_one(params, "_count"), _one(params, "_offset"))


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
                        **({"searchInclude": list(served.includes)} if served.includes else {}),
                        **(
                            {"searchRevInclude": list(served.revincludes)}
                            if served.revincludes
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
    router = APIRouter(prefix="/fhir", dependencies=[Depends(_acceptable)])
    observations = ObservationStore(catalog)
    resources = FhirResourceStore(catalog)
    reader = Depends(auth.bearer)

    def base_of(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/fhir"

    def searchset(
        request: Request,
        principal: Principal,
        kind: str,
        found: SearchPage,
        paging: Page,
        included: Sequence[dict[str, Any]] = (),
    ) -> FhirResponse:
        auth.audit(
            request,
            principal,
            AccessAction.SEARCH,
            kind,
            [f"{r['resourceType']}/{r['id']}" for r in (*found.resources, *included)],
        )
        base = base_of(request)
        links = [{"relation": "self", "url": str(request.url)}]
        if paging.count:
            if paging.offset + paging.count < found.total:
                links.append(
                    {"relation": "next", "url": _at(request, paging.offset + paging.count)}
                )
            if paging.offset > 0:
                previous = max(0, paging.offset - paging.count)
                links.append({"relation": "previous", "url": _at(request, previous)})
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": found.total,
            "link": links,
        }
        entries = [
            {"fullUrl": f"{base}/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in found.resources
        ] + [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "include"},
            }
            for r in included
        ]
        if entries:
            bundle["entry"] = entries
        return FhirResponse(bundle)

    def _at(request: Request, offset: int) -> str:
        """The search's URL at another offset (every other parameter as given)."""
        items = [(k, v) for k, v in request.query_params.multi_items() if k != "_offset"]
        return f"{str(request.url).split('?', 1)[0]}?{urlencode([*items, ('_offset', offset)])}"

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

    def included(found: SearchPage, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        """The resources ``_include`` and ``_revinclude`` ask for, beside the matches."""
        for name, allowed in (("_include", _INCLUDE), ("_revinclude", _REVINCLUDE)):
            if _one(params, name) not in (None, allowed):
                raise FhirError(400, "not-supported", f"{name}: only {allowed}")
        out: list[dict[str, Any]] = []
        if "_include" in params:
            refs = {o.get("device", {}).get("reference", "") for o in found.resources}
            ids = sorted(r.removeprefix("Device/") for r in refs if r.startswith("Device/"))
            out += resources.get_many(ServedType.DEVICE, ids)
        if "_revinclude" in params and found.resources:
            targets = [f"Observation/{o['id']}" for o in found.resources]
            out += resources.search(ServedType.PROVENANCE, targets, 0, MAX_COUNT).resources
        return out

    @router.get("/Observation")
    def search_observation(request: Request, principal: Principal = reader) -> FhirResponse:
        keys = [p.key for p in SERVED[0].search]
        # A plain subject/patient reference is accepted only to be refused with the reason.
        named = (*keys, "subject", "patient", "_include", "_revinclude", *_RESULT_PARAMS)
        params = _params(request, named, _REPEATABLE)
        for reference in ("subject", "patient"):
            if reference in params:
                raise FhirError(400, "not-supported", _BY_IDENTIFIER.format(reference))
        paging = _page(params)
        with _search_syntax():
            query = ObservationQuery(
                ids=tuple(i for v in params.get("_id", []) for i in v.split(",")),
                subjects=_tokens(params, "subject:identifier", "patient:identifier"),
                codes=_tokens(params, "code"),
                identifiers=_tokens(params, "identifier"),
                effective=tuple(date_bounds("date", v) for v in params.get("date", [])),
                last_updated=tuple(
                    date_bounds("_lastUpdated", v) for v in params.get("_lastUpdated", [])
                ),
            )
        found = observations.search(query, paging.offset, paging.count)
        return searchset(request, principal, "Observation", found, paging, included(found, params))

    @router.get("/Device")
    def search_device(request: Request, principal: Principal = reader) -> FhirResponse:
        params = _params(request, ("identifier", *_RESULT_PARAMS))
        paging = _page(params)
        if "identifier" not in params:
            raise FhirError(400, "required", "search Device by identifier=system|value")
        with _search_syntax():
            wanted = _tokens(params, "identifier")
        if any(t.system is None or t.value is None for t in wanted):
            raise FhirError(400, "invalid", "identifier: give system|value")
        keys = [f"{t.system}|{t.value}" for t in wanted]
        found = resources.search(ServedType.DEVICE, keys, paging.offset, paging.count)
        return searchset(request, principal, "Device", found, paging)

    @router.get("/Provenance")
    def search_provenance(request: Request, principal: Principal = reader) -> FhirResponse:
        params = _params(request, ("target", *_RESULT_PARAMS))
        paging = _page(params)
        target = _one(params, "target")
        if target is None:
            raise FhirError(400, "required", "search Provenance by target=Observation/<id>")
        base = base_of(request) + "/"
        keys = []
        for value in target.split(","):
            relative = value[len(base) :] if value.startswith(base) else value
            kind, _, target_id = relative.partition("/")
            if kind != "Observation" or not _ID_RE.match(target_id):
                raise FhirError(400, "invalid", "target: give Observation/<id>")
            keys.append(relative)
        found = resources.search(ServedType.PROVENANCE, keys, paging.offset, paging.count)
        return searchset(request, principal, "Provenance", found, paging)

    return router
