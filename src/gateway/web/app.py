"""The HTTP service: health, metrics, status page, JSON API and a read-only FHIR endpoint.

Who may see what:

* ``/health``, ``/ready``, ``/fhir/metadata`` and ``/static/`` need nothing.
* ``/metrics`` needs nothing by default (counts by state and destination names; no
  patient data), a bearer token with ``http.metrics_auth = true``.
* ``/api/*`` and ``/fhir/*`` need a token in the ``Authorization: Bearer`` header.
* The status page (``/``, ``/studies/{uid}``) needs a session opened at ``/login``;
  heatmap PNGs, ``/openapi.json`` and ``/docs`` take either.

Without a configured token, everything protected answers 503: nothing is served
unprotected. Parts: :mod:`.auth` (tokens, sessions, CSRF, audit), :mod:`.api`,
:mod:`.fhir`, :mod:`.pages` (status page), :mod:`.views` (what a study shows).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ihgamp_core import __version__

from ..analyses.engine import ModelIdentity
from ..catalog import Catalog, JobStore
from ..config import Settings
from ..lifecycle import RowSubmitter, StudyLifecycle
from ..outbox import Outbox
from .api import api_router
from .auth import Authenticator, LoginRequired, TokenRegistry
from .fhir import FHIR_JSON, FhirError, fhir_router, operation_outcome
from .metrics import render_metrics
from .pages import mount_static, pages_router
from .throttle import LoginThrottle
from .views import InvalidStudyUid

__all__ = ["FHIR_JSON", "create_app"]

logger = logging.getLogger(__name__)

_FHIR_CODES = {401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported"}
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: with no-referrer, browsers send "Origin: null" on the
    # page's own forms, and the same-origin check of the forms would refuse them.
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


def _is_fhir(request: Request) -> bool:
    return request.url.path == "/fhir" or request.url.path.startswith("/fhir/")


def _one_line(exc: RequestValidationError) -> str:
    """``limit: Input should be less than or equal to 500`` (no input echoed)."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
        parts.append(f"{'.'.join(loc) or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is one line: JSON ``{"detail": ...}``, or an OperationOutcome."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_fhir(request):
            code = _FHIR_CODES.get(exc.status_code, "processing")
            response: Response = operation_outcome(exc.status_code, code, str(exc.detail))
            for key, value in (exc.headers or {}).items():
                response.headers[key] = value
            return response
        return JSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if _is_fhir(request):
            return operation_outcome(400, "invalid", _one_line(exc))
        return JSONResponse({"detail": _one_line(exc)}, status_code=422)

    @app.exception_handler(InvalidStudyUid)
    async def invalid_uid(request: Request, exc: InvalidStudyUid) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, exc: FhirError) -> Response:
        return operation_outcome(exc.status, exc.code, exc.text)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        # A bug, not bad input: uvicorn logs the traceback once (as JSON).
        if _is_fhir(request):
            return operation_outcome(500, "exception", "internal error")
        return JSONResponse({"detail": "internal error"}, status_code=500)


def _row_rescore(catalog: Catalog, settings: Settings) -> Callable[[str, str], None]:
    """Rescore by writing job rows (when no queue backend is given: in-process workers)."""
    from ..routing import StudyRouter

    submitter = RowSubmitter(JobStore(catalog), settings.worker.max_attempts)
    router = StudyRouter(catalog, settings.analyses)
    return StudyLifecycle(catalog, submitter, None, router).rescore


def create_app(
    catalog: Catalog,
    outbox: Outbox,
    settings: Settings,
    *,
    ready: Callable[[], bool] = lambda: True,
    pull: Callable[[object, str | None], dict[str, Any]] | None = None,
    pull_status: Callable[[int], dict[str, Any] | None] | None = None,
    rescore: Callable[[str, str], None] | None = None,
    model: ModelIdentity | None = None,
    tokens: TokenRegistry | None = None,
) -> FastAPI:
    """Build the FastAPI application.

    Parameters
    ----------
    catalog : Catalog
        The catalog.
    outbox : Outbox
        The outbox (heatmap PNGs, result summaries).
    settings : Settings
        ``http`` (tokens, sessions, metrics access), and the attempt budgets that
        requeue (``worker.max_attempts``) and redispatch (``dispatch.max_attempts``) apply.
    ready : callable
        Readiness probe of the running services.
    pull : callable, optional
        Queues a pull request (``POST /api/pull``; body, token name), when PACS nodes are
        configured.
    pull_status : callable, optional
        A pull request's state by id (``GET /api/pull/{id}``).
    rescore : callable, optional
        Queues a study again (study UID, reason): the status page's requeue button.
    model : ModelIdentity, optional
        The model this process scores with (shown on the status page).
    tokens : TokenRegistry, optional
        The tokens (default: read from ``settings.http``).

    Raises
    ------
    ConfigError
        If a token file cannot be read.
    """
    http = settings.http
    registry = tokens if tokens is not None else TokenRegistry(http.api_tokens())
    auth = Authenticator(
        catalog,
        registry,
        http.session_max_age_s,
        http.cookie_secure,
        LoginThrottle(http.login_failures_before_backoff),
    )
    app = FastAPI(
        title="IHGAMP gateway",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    _install_error_handlers(app)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": __version__}

    @app.get("/ready")
    def is_ready() -> Response:
        """Readiness: the catalog answers and the services run."""
        try:
            catalog.counts()
            ok = ready()
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            ok = False
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    metrics_deps = [Depends(auth.bearer)] if http.metrics_auth else []

    @app.get("/metrics", dependencies=metrics_deps)
    def metrics() -> Response:
        """Prometheus metrics."""
        body, content_type = render_metrics(catalog)
        return Response(body, media_type=content_type)

    @app.get("/openapi.json", dependencies=[Depends(auth.bearer_or_session)])
    def openapi() -> dict[str, Any]:
        """The OpenAPI description of this service."""
        return app.openapi()

    app.include_router(api_router(catalog, outbox, auth, pull, pull_status))
    app.include_router(fhir_router(catalog, auth))
    app.include_router(
        pages_router(
            catalog,
            auth,
            model,
            rescore or _row_rescore(catalog, settings),
            settings.dispatch.max_attempts,
            app.openapi,
        )
    )
    mount_static(app)
    return app
