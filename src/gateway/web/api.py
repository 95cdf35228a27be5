"""The JSON API: studies, one study, map PNGs, the access audit, and pull requests.

Every parameter is declared with its bounds; a value outside them is answered with 422
and a one-line ``{"detail": "limit: ..."}`` (see :mod:`.app`), never with a server error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response

from ..catalog import AnalysisStore, Catalog, StudyState
from ..catalog.access import AccessLog
from ..catalog.deliveries import DeliveryStore
from ..catalog.schema import AccessAction
from ..outbox import Outbox
from .auth import Authenticator, Principal
from .views import ANALYSIS_FOLDER_RE, HEATMAP_RE, detail_dict, study_detail, study_row

__all__ = ["MAX_STUDIES", "api_router", "known_parameters"]

#: The most studies one ``GET /api/studies`` lists.
MAX_STUDIES = 500
UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
StudyUid = Annotated[
    str, Path(pattern=UID_PATTERN, max_length=64, description="Study Instance UID")
]


def known_parameters(request: Request) -> None:
    """Refuse query parameters the route does not declare, or that are given twice.

    Raises
    ------
    HTTPException
        422 naming the unknown parameters.
    """
    declared: set[str] = set()
    pending = [getattr(request.scope.get("route"), "dependant", None)]
    while pending:
        dependant = pending.pop()
        if dependant is not None:
            declared.update(p.alias for p in dependant.query_params)
            pending.extend(dependant.dependencies)
    names = [name for name, _ in request.query_params.multi_items()]
    if "access_token" in names:
        raise HTTPException(
            401,
            "tokens go in the Authorization header, never in the URL",
            headers={"WWW-Authenticate": "Bearer"},
        )
    unknown = sorted(set(names) - declared)
    if unknown:
        raise HTTPException(422, f"unknown query parameters: {', '.join(unknown)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise HTTPException(422, f"query parameters given more than once: {', '.join(repeated)}")


#: Largest ``POST /api/pull`` body read (a request names one study or accession).
MAX_PULL_BODY = 4096


def api_router(
    catalog: Catalog,
    outbox: Outbox,
    auth: Authenticator,
    pull: Callable[[object, str | None], dict[str, Any]] | None = None,
    pull_status: Callable[[int], dict[str, Any] | None] | None = None,
) -> APIRouter:
    """The ``/api`` routes and the map PNGs (bearer token; PNGs also by session)."""
    router = APIRouter(dependencies=[Depends(known_parameters)])
    reader = Depends(auth.bearer)
    operator = Depends(auth.operator_bearer)
    deliveries = DeliveryStore(catalog)

    @router.get("/api/studies")
    def studies(
        request: Request,
        principal: Principal = reader,
        limit: Annotated[int, Query(ge=1, le=MAX_STUDIES)] = 100,
        state: StudyState | None = None,
    ) -> list[dict[str, Any]]:
        """Studies, newest first (optionally in one state)."""
        found = catalog.studies(states=[state] if state else None, limit=limit)
        results = AnalysisStore(catalog).results_of([s.study_uid for s in found])
        rows = [
            study_row(s, deliveries.deliveries(study_uid=s.study_uid), results.get(s.study_uid, []))
            for s in found
        ]
        auth.audit(request, principal, AccessAction.SEARCH, "Study", [s.study_uid for s in found])
        return rows

    @router.get("/api/studies/{study_uid}")
    def study(study_uid: StudyUid, request: Request, principal: Principal = reader) -> Any:
        """One study: its analyses' results, jobs, deliveries, timeline."""
        detail = study_detail(catalog, study_uid)
        if detail is None:
            raise HTTPException(404, f"no study {study_uid}")
        auth.audit(request, principal, AccessAction.READ, "Study", [study_uid])
        return detail_dict(detail)

    @router.get("/api/audit")
    def audit(
        principal: Principal = operator,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        token: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")] = None,
    ) -> list[dict[str, Any]]:
        """Who read which results, newest first (``operate`` tokens only)."""
        return [e.to_dict() for e in AccessLog(catalog).entries(limit=limit, token_name=token)]

    @router.get("/studies/{study_uid}/{folder}/{name}")
    def analysis_file(
        study_uid: StudyUid,
        folder: Annotated[str, Path(max_length=70)],
        name: Annotated[str, Path(max_length=32)],
        request: Request,
        principal: Principal = Depends(auth.bearer_or_session),  # noqa: B008
    ) -> Response:
        """An analysis request's map PNG (``<request folder>/heatmap-<n>.png``)."""
        if not ANALYSIS_FOLDER_RE.match(folder) or not HEATMAP_RE.match(name):
            raise HTTPException(404, "only analysis map PNGs are served")
        path = outbox.root / study_uid / folder / name
        if not path.is_file():
            raise HTTPException(404, "no such file")
        where = f"{study_uid}/{folder}/{name}"
        auth.audit(request, principal, AccessAction.READ, "Heatmap", [where])
        return FileResponse(path, media_type="image/png")

    if pull is not None:
        pull_handler = pull

        @router.post("/api/pull")
        async def api_pull(request: Request, principal: Principal = reader) -> Response:
            """Queue a pull of one study (accession, Study UID, or patient + date); 202 + id."""
            from ..errors import ConfigError, GatewayError

            declared = request.headers.get("content-length")
            if declared is None or not declared.isdigit() or int(declared) > MAX_PULL_BODY:
                raise HTTPException(413, f"declare a body length of at most {MAX_PULL_BODY}")
            media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                raise HTTPException(415, "send the body as application/json")
            raw = b""
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > MAX_PULL_BODY:
                    raise HTTPException(413, f"the body is longer than {MAX_PULL_BODY} bytes")
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):  # RecursionError: nested too deeply
                raise HTTPException(400, "expected a JSON object") from None
            try:
                result = await run_in_threadpool(pull_handler, body, principal.name)
            except ConfigError as exc:
                raise HTTPException(400, str(exc)) from None
            except GatewayError as exc:
                raise HTTPException(503, str(exc)) from None
            return JSONResponse(result, status_code=202)

    if pull_status is not None:
        status_handler = pull_status

        @router.get("/api/pull/{pull_id}")
        def api_pull_status(
            pull_id: Annotated[int, Path(ge=1, le=2**63 - 1)], principal: Principal = reader
        ) -> Response:
            """A pull request's state: queued, running, done or failed, and what it found."""
            found = status_handler(pull_id)
            if found is None:
                raise HTTPException(404, f"no pull request {pull_id}")
            return JSONResponse(found)

    return router
