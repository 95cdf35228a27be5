"""The status page: log in, filter studies by state, study detail, requeue, redispatch.

Server-rendered (Jinja2 templates with autoescaping, ``templates/``; one stylesheet in
``static/``; no script and nothing from outside the gateway). Pages need a session
(:mod:`.auth`); the forms that change state carry its CSRF token.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ihgamp_core import __version__

from ..analyses.engine import ModelIdentity
from ..catalog import (
    AnalysisResultView,
    AnalysisStore,
    Catalog,
    JobState,
    JobStore,
    StudySnapshot,
    StudyState,
)
from ..catalog.deliveries import DeliveryStore, DeliveryView
from ..catalog.leases import LEADER_LEASE, NamedLease
from ..catalog.schema import AccessAction, DeliveryState
from ..config import TokenAccess
from ..errors import CatalogError
from .api import StudyUid, known_parameters
from .auth import Authenticator, AuthMethod, LoginRequired, Principal, client_address
from .views import AnalysisMaps, ModelSummary, analysis_maps, study_detail

__all__ = ["STATIC_DIR", "mount_static", "pages_router", "render"]

STATIC_DIR = Path(__file__).parent / "static"
_ENV = Environment(
    loader=PackageLoader("gateway.web", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
)
_MESSAGES = {
    "requeued": "Study queued for scoring again.",
    "redispatched": "Dead-letter deliveries are pending again.",
}


def render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render one template of ``templates/``."""
    context.setdefault("version", __version__)
    context.setdefault("principal", None)
    context.setdefault("message", None)
    context.setdefault("error", None)
    return HTMLResponse(_ENV.get_template(template).render(**context), status_code=status_code)


def _summary(model: ModelIdentity | None) -> ModelSummary | None:
    if model is None:
        return None
    return ModelSummary(
        model.display_name,
        model.head_version,
        model.backbone.describe(),
        model.demo,
        model.intended_use,
    )


def _local_path(target: str | None) -> str:
    """Where to go after logging in: a path on this site, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@dataclass(frozen=True)
class _Row:
    study: StudySnapshot
    deliveries: list[DeliveryView]
    analyses: list[AnalysisResultView]
    maps: list[AnalysisMaps]


def pages_router(
    catalog: Catalog,
    auth: Authenticator,
    model: ModelIdentity | None,
    rescore: Callable[[str, str], None],
    dispatch_max_attempts: int,
    openapi: Callable[[], dict[str, Any]],
) -> APIRouter:
    """The status page's routes."""
    router = APIRouter(dependencies=[Depends(known_parameters)])
    operator = Depends(auth.session)
    jobs = JobStore(catalog)
    deliveries = DeliveryStore(catalog)
    loaded = _summary(model)

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002
        try:
            auth.session(request)
        except (LoginRequired, HTTPException):
            return render("login.html", next=_local_path(next))
        return RedirectResponse(_local_path(next), status_code=303)

    @router.post("/login")
    async def login(request: Request) -> Response:
        client = client_address(request)
        wait = auth.throttle.wait_s(client)
        if wait > 0:  # too many failures in a row from this address: the token is not read
            retry = str(math.ceil(wait))
            error = f"Too many failed logins from this address; try again in {retry} s."
            page = render("login.html", 429, next="/", error=error)
            page.headers["Retry-After"] = retry
            return page
        fields = await auth.form(request)
        entry = auth.tokens.identify(fields.get("token", "").strip())
        target = _local_path(fields.get("next"))
        if entry is None or entry.access != TokenAccess.OPERATE:
            auth.login_failed(request, 401 if entry is None else 403)
            error = "Unknown or expired token." if entry is None else "This token may not log in."
            return render("login.html", 401 if entry is None else 403, next=target, error=error)
        auth.throttle.succeeded(client)
        response = RedirectResponse(target, status_code=303)
        auth.open_session(request, response, entry.name)
        principal = Principal(entry.name, entry.access, AuthMethod.SESSION)
        auth.audit(request, principal, AccessAction.LOGIN, status=303)
        return response

    @router.post("/logout")
    async def logout(request: Request, principal: Principal = operator) -> Response:
        await auth.checked_form(request, principal)
        response = RedirectResponse("/login", status_code=303)
        auth.close_session(request, response)
        auth.audit(request, principal, AccessAction.LOGOUT, status=303)
        return response

    @router.get("/", response_class=HTMLResponse)
    def status_page(
        request: Request, principal: Principal = operator, state: StudyState | None = None
    ) -> Response:
        counts = catalog.counts()
        studies = catalog.studies(states=[state] if state else None, limit=200)
        results = AnalysisStore(catalog).results_of([s.study_uid for s in studies])
        rows = [
            _Row(
                s,
                deliveries.deliveries(study_uid=s.study_uid),
                results.get(s.study_uid, []),
                analysis_maps(results.get(s.study_uid, [])),
            )
            for s in studies
        ]
        auth.audit(request, principal, AccessAction.SEARCH, "Study", [s.study_uid for s in studies])
        return render(
            "status.html",
            principal=principal,
            model=loaded,
            state=state,
            total=sum(counts.values()),
            counts=[(str(s), counts.get(s, 0)) for s in StudyState],
            rows=rows,
            failed_jobs=jobs.jobs(limit=100, states=[JobState.FAILED]),
            running_jobs=jobs.jobs(limit=100, states=[JobState.RUNNING]),
            leader=NamedLease(catalog, LEADER_LEASE, "", 0).holder(),
            dead_letters=deliveries.deliveries(states=[DeliveryState.DEAD_LETTER], limit=100),
        )

    def study_page(
        request: Request,
        principal: Principal,
        study_uid: str,
        message: str | None = None,
        error: str | None = None,
        status_code: int = 200,
    ) -> Response:
        detail = study_detail(catalog, study_uid)
        if detail is None:
            raise HTTPException(404, f"no study {study_uid}")
        auth.audit(request, principal, AccessAction.READ, "Study", [study_uid])
        return render(
            "study.html",
            status_code,
            principal=principal,
            model=loaded,
            d=detail,
            message=message,
            error=error,
        )

    @router.get("/studies/{study_uid}", response_class=HTMLResponse)
    def study(
        study_uid: StudyUid,
        request: Request,
        principal: Principal = operator,
        done: Literal["requeued", "redispatched"] | None = None,
    ) -> Response:
        return study_page(request, principal, study_uid, _MESSAGES.get(done or ""))

    @router.post("/studies/{study_uid}/requeue")
    async def requeue(
        study_uid: StudyUid, request: Request, principal: Principal = operator
    ) -> Response:
        await auth.checked_form(request, principal)
        try:
            await run_in_threadpool(rescore, study_uid, "requeued by operator")
        except CatalogError as exc:
            return study_page(request, principal, study_uid, error=str(exc), status_code=409)
        auth.audit(request, principal, AccessAction.REQUEUE, "Study", [study_uid], 303)
        return RedirectResponse(f"/studies/{study_uid}?done=requeued", status_code=303)

    @router.post("/studies/{study_uid}/redispatch")
    async def redispatch(
        study_uid: StudyUid, request: Request, principal: Principal = operator
    ) -> Response:
        await auth.checked_form(request, principal)
        deliveries.redispatch(study_uid, max_attempts=dispatch_max_attempts)
        auth.audit(request, principal, AccessAction.REDISPATCH, "Study", [study_uid], 303)
        return RedirectResponse(f"/studies/{study_uid}?done=redispatched", status_code=303)

    @router.get("/docs", response_class=HTMLResponse)
    def docs(principal: Principal = Depends(auth.bearer_or_session)) -> Response:  # noqa: B008
        return render("docs.html", principal=principal, spec=openapi())

    return router


def mount_static(app: FastAPI) -> None:
    """Serve ``static/`` (the stylesheet) at ``/static`` without authentication."""
    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
