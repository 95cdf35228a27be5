"""The HTTP service: health, metrics, status page, JSON API and a read-only FHIR endpoint.

Authentication: every route except ``/health``, ``/ready``, ``/metrics`` and
``/fhir/metadata`` needs the configured bearer token, as an ``Authorization: Bearer``
header or an ``access_token`` query parameter (RFC 6750, for the status page in a browser).
Without a configured token those routes answer 503, so nothing is served unprotected.
"""

from __future__ import annotations

import datetime as dt
import hmac
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ihgamp_core import __version__

from ..catalog import Catalog, JobStore
from ..catalog.deliveries import DeliveryStore, ObservationStore
from ..dispatch.outbox import Outbox
from .metrics import render_metrics

#: Largest ``POST /api/pull`` body read (a request names one study or accession).
MAX_PULL_BODY = 4096

__all__ = ["FHIR_JSON", "create_app"]

FHIR_JSON = "application/fhir+json"


class FhirResponse(JSONResponse):
    """JSON with the FHIR media type."""

    media_type = FHIR_JSON


def _operation_outcome(status: int, code: str, text: str) -> FhirResponse:
    return FhirResponse(
        status_code=status,
        content={
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": text}],
        },
    )


def create_app(
    catalog: Catalog,
    outbox: Outbox,
    token: str | None,
    ready: Callable[[], bool] = lambda: True,
    pull: Callable[[object], dict[str, Any]] | None = None,
    pull_status: Callable[[int], dict[str, Any] | None] | None = None,
) -> FastAPI:
    """Build the FastAPI application.

    Parameters
    ----------
    catalog : Catalog
        The catalog.
    outbox : Outbox
        The outbox (heatmap PNGs).
    token : str or None
        The bearer token protecting everything but health, metrics and FHIR metadata.
    ready : callable
        Readiness probe of the running services.
    pull : callable, optional
        Queues a pull request (``POST /api/pull``), when PACS nodes are configured.
    pull_status : callable, optional
        A pull request's state by id (``GET /api/pull/{id}``).
    """
    app = FastAPI(title="IHGAMP gateway", version=__version__, docs_url=None, redoc_url=None)
    observations = ObservationStore(catalog)

    def authorize(request: Request) -> None:
        if token is None:
            raise HTTPException(503, "no API token is configured (http.token); access disabled")
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else None
        given = given or request.query_params.get("access_token")
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    auth = [Depends(authorize)]

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/fhir"):
            code = {401: "login", 404: "not-found", 503: "transient"}.get(
                exc.status_code, "processing"
            )
            response = _operation_outcome(exc.status_code, code, str(exc.detail))
            for key, value in (exc.headers or {}).items():
                response.headers[key] = value
            return response
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/ready")
    def is_ready() -> Response:
        try:
            catalog.counts()
            ok = ready()
        except Exception:
            ok = False
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        body, content_type = render_metrics(catalog)
        return Response(body, media_type=content_type)

    @app.get("/api/studies", dependencies=auth)
    def studies(limit: int = 100) -> list[dict[str, Any]]:
        deliveries = DeliveryStore(catalog)
        out = []
        for s in catalog.studies(limit=limit):
            out.append(
                {
                    "study_uid": s.study_uid,
                    "accession_number": s.accession_number,
                    "state": s.state,
                    "reason": s.state_reason,
                    "call": s.result_call,
                    "probability": s.result_probability,
                    "last_received_at": s.last_received_at.isoformat(),
                    "scored_at": s.scored_at.isoformat() if s.scored_at else None,
                    "deliveries": [
                        {
                            "destination": d.destination,
                            "state": d.state,
                            "attempts": d.attempts,
                            "error": d.last_error,
                        }
                        for d in deliveries.deliveries(study_uid=s.study_uid)
                    ],
                }
            )
        return out

    if pull is not None:
        pull_handler = pull

        @app.post("/api/pull", dependencies=auth)
        async def api_pull(request: Request) -> Response:
            from ..errors import ConfigError, GatewayError

            declared = request.headers.get("content-length")
            if declared is None or not declared.isdigit() or int(declared) > MAX_PULL_BODY:
                raise HTTPException(413, f"declare a body length of at most {MAX_PULL_BODY}")
            raw = b""
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > MAX_PULL_BODY:
                    raise HTTPException(413, f"the body is longer than {MAX_PULL_BODY} bytes")
            try:
                body = json.loads(raw)
            except ValueError:
                raise HTTPException(400, "expected a JSON object") from None
            try:
                result = await run_in_threadpool(pull_handler, body)
            except ConfigError as exc:
                raise HTTPException(400, str(exc)) from None
            except GatewayError as exc:
                raise HTTPException(503, str(exc)) from None
            return JSONResponse(result, status_code=202)

    if pull_status is not None:
        status_handler = pull_status

        @app.get("/api/pull/{pull_id}", dependencies=auth)
        def api_pull_status(pull_id: int) -> Response:
            found = status_handler(pull_id)
            if found is None:
                raise HTTPException(404, f"no pull request {pull_id}")
            return JSONResponse(found)

    @app.get("/studies/{study_uid}/{name}", dependencies=auth)
    def study_file(study_uid: str, name: str) -> Response:
        if not (name.startswith("heatmap-") and name.endswith(".png")):
            raise HTTPException(404, "only heatmap PNGs are served")
        try:
            path: Path = outbox.folder(study_uid) / name
        except Exception:
            raise HTTPException(404, "unknown study") from None
        if not path.is_file():
            raise HTTPException(404, "no such file")
        return FileResponse(path, media_type="image/png")

    @app.get("/", response_class=HTMLResponse, dependencies=auth)
    def status_page(request: Request) -> str:
        return _render_status(catalog, outbox, request.query_params.get("access_token"))

    # -- FHIR (read-only) --------------------------------------------------------------

    @app.get("/fhir/metadata")
    def capability(request: Request) -> Response:
        base = str(request.base_url).rstrip("/") + "/fhir"
        return FhirResponse(_capability_statement(base))

    @app.get("/fhir/Observation/{observation_id}", dependencies=auth)
    def read_observation(observation_id: str) -> Response:
        resource = observations.get(observation_id)
        if resource is None:
            raise HTTPException(404, f"Observation/{observation_id} not found")
        return FhirResponse(resource)

    @app.get("/fhir/Observation", dependencies=auth)
    def search_observation(request: Request) -> Response:
        params = request.query_params
        allowed = {"subject:identifier", "code", "_count", "_format"}
        unknown = set(params) - allowed
        if unknown:
            message = f"unsupported search parameters: {sorted(unknown)}"
            return _operation_outcome(400, "not-supported", message)
        system = value = code_system = code = None
        if "subject:identifier" in params:
            system, value = _token(params["subject:identifier"])
        if "code" in params:
            code_system, code = _token(params["code"])
        count = int(params.get("_count", "100"))
        found = observations.search(system, value, code_system, code, limit=min(count, 500))
        base = str(request.base_url).rstrip("/") + "/fhir"
        return FhirResponse(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(found),
                "link": [{"relation": "self", "url": str(request.url)}],
                "entry": [
                    {
                        "fullUrl": f"{base}/Observation/{r['id']}",
                        "resource": r,
                        "search": {"mode": "match"},
                    }
                    for r in found
                ],
            }
        )

    return app


def _token(text: str) -> tuple[str | None, str | None]:
    """Split a FHIR token search value ``system|code`` (either side may be empty)."""
    if "|" in text:
        system, value = text.split("|", 1)
        return (system or None), (value or None)
    return None, text or None


def _capability_statement(base: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": dt.date.today().isoformat(),
        "kind": "instance",
        "software": {"name": "IHGAMP pathology gateway", "version": __version__},
        "implementation": {"description": "IHGAMP HRD estimates (read-only)", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "OAuth",
                                    "display": "OAuth",
                                }
                            ]
                        }
                    ],
                    "description": "Bearer token (static, configured as http.token)",
                },
                "resource": [
                    {
                        "type": "Observation",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {
                                "name": "subject:identifier",
                                "type": "token",
                                "documentation": "Patient identifier, system|value",
                            },
                            {
                                "name": "code",
                                "type": "token",
                                "documentation": "http://loinc.org|107286-7",
                            },
                        ],
                    }
                ],
            }
        ],
    }


def _render_status(catalog: Catalog, outbox: Outbox, token: str | None) -> str:
    query = f"?access_token={html.escape(token)}" if token else ""
    rows = []
    deliveries = DeliveryStore(catalog)
    for s in catalog.studies(limit=100):
        thumbs = ""
        folder = outbox.root / s.study_uid
        for png in sorted(folder.glob("heatmap-*.png")) if folder.is_dir() else []:
            src = f"/studies/{html.escape(s.study_uid)}/{png.name}{query}"
            thumbs += f'<img src="{src}" alt="heatmap" height="120">'
        sent = ", ".join(
            f"{d.destination}: {d.state}" for d in deliveries.deliveries(study_uid=s.study_uid)
        )
        prob = "" if s.result_probability is None else f"{s.result_probability:.3f}"
        rows.append(
            f"<tr><td>{html.escape(s.study_uid)}</td><td>{html.escape(s.accession_number or '')}"
            f"</td><td class='{s.state}'>{s.state}</td><td>{html.escape(s.result_call or '')}</td>"
            f"<td>{prob}</td><td>{html.escape(s.state_reason or '')}</td>"
            f"<td>{html.escape(sent)}</td><td>{thumbs}</td></tr>"
        )
    failed = [j for j in JobStore(catalog).jobs(limit=50) if j.state == "failed"]
    jobs = "".join(
        f"<li>{html.escape(j.study_uid)}: {html.escape(j.last_error or '')}</li>" for j in failed
    )
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(catalog.counts().items()))
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>IHGAMP gateway</title><meta http-equiv="refresh" content="10">
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}}
.scored{{color:#060}}.failed{{color:#b00;font-weight:bold}}.receiving{{color:#06c}}</style>
</head><body><h1>IHGAMP pathology gateway {__version__}</h1>
<p>Screening/triage estimates of HRD from H&amp;E morphology: not a companion diagnostic.</p>
<p>Studies: {html.escape(counts) or "none yet"}</p>
<table><tr><th>Study UID</th><th>Accession</th><th>State</th><th>Call</th><th>P(HRD)</th>
<th>Note</th><th>Deliveries</th><th>Heatmaps</th></tr>{"".join(rows)}</table>
<h2>Failed jobs</h2><ul>{jobs or "<li>none</li>"}</ul></body></html>"""
