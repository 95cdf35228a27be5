"""Who may do what over HTTP: named bearer tokens, status-page sessions, CSRF, audit.

* The JSON API and FHIR take a token only in the ``Authorization: Bearer`` header
  (never in the URL, where proxies and browser history keep it).
* The status page logs in with a form: a token with ``operate`` access opens a session,
  an opaque random cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS or
  with ``http.cookie_secure``) that expires after ``http.session_max_age_s`` and is
  revoked by logging out, by ``ihgamp sessions --revoke``, or when its token expires or
  leaves the configuration. Forms that change state carry the session's CSRF token and
  must come from the page's own origin.
* Reads of results and operator actions are recorded in the catalog
  (:class:`~gateway.catalog.access.AccessLog`) and logged without query values.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl

from fastapi import HTTPException, Request
from pydantic import SecretStr
from starlette.responses import Response

from ..catalog import Catalog, utcnow
from ..catalog.access import AccessLog, SessionStore
from ..catalog.schema import AccessAction
from ..config import ApiToken, TokenAccess
from ..errors import ConfigError
from .throttle import LoginThrottle

__all__ = [
    "COOKIE",
    "AuthMethod",
    "Authenticator",
    "LoginRequired",
    "Principal",
    "TokenRegistry",
]

logger = logging.getLogger(__name__)

COOKIE = "ihgamp_session"
MAX_FORM_BYTES = 4096


class AuthMethod(StrEnum):
    """How a request proved who it is."""

    BEARER = "bearer"
    SESSION = "session"


@dataclass(frozen=True)
class Principal:
    """The token behind a request (by name; never its value)."""

    name: str
    access: TokenAccess
    method: AuthMethod
    csrf: str | None = None

    @property
    def may_operate(self) -> bool:
        """Whether this token may use the status page and its actions."""
        return self.access == TokenAccess.OPERATE


class LoginRequired(Exception):  # noqa: N818 - a control-flow signal, answered by a redirect
    """A status-page request without a live session (answered by a redirect to /login)."""


@dataclass(frozen=True)
class _Entry:
    name: str
    digest: bytes
    expires_at: dt.datetime | None
    access: TokenAccess


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class TokenRegistry:
    """The configured tokens, read once (files included) and compared in constant time.

    Parameters
    ----------
    tokens : sequence of ApiToken
        ``HttpSettings.api_tokens()``.

    Raises
    ------
    ConfigError
        If a token file cannot be read, or two tokens have the same value.
    """

    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self._entries = [
            _Entry(t.name, _digest(t.secret()), t.expires_at(), t.access) for t in tokens
        ]
        for index, entry in enumerate(self._entries):
            for other in self._entries[index + 1 :]:
                if entry.digest == other.digest:
                    raise ConfigError(
                        f"tokens {entry.name!r} and {other.name!r} have the same value"
                    )

    @classmethod
    def single(cls, token: str | None, name: str = "default") -> TokenRegistry:
        """One ``operate`` token (or none), as ``http.token`` configures it."""
        if token is None:
            return cls([])
        return cls([ApiToken(name=name, token=SecretStr(token), access=TokenAccess.OPERATE)])

    def __bool__(self) -> bool:
        return bool(self._entries)

    def identify(self, secret: str, now: dt.datetime | None = None) -> _Entry | None:
        """The live token whose value is ``secret`` (None if unknown or expired)."""
        given = _digest(secret)
        found = None
        for entry in self._entries:  # no early exit: every comparison is made
            if hmac.compare_digest(given, entry.digest):
                found = entry
        if found is not None and not self._live(found, now):
            logger.warning("expired API token used", extra={"token": found.name})
            return None
        return found

    def live(self, name: str, now: dt.datetime | None = None) -> _Entry | None:
        """The token called ``name``, if it is still configured and not expired."""
        entry = next((e for e in self._entries if e.name == name), None)
        return entry if entry is not None and self._live(entry, now) else None

    @staticmethod
    def _live(entry: _Entry, now: dt.datetime | None) -> bool:
        return entry.expires_at is None or (now or utcnow()) < entry.expires_at


def client_address(request: Request) -> str:
    """The peer's address (as the socket sees it)."""
    return request.client.host if request.client else "unknown"


def route_template(request: Request) -> str:
    """The matched route's path template (``/fhir/Observation/{id}``), never query values."""
    route = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))


class Authenticator:
    """Checks requests against the tokens and sessions; records audited requests.

    Parameters
    ----------
    catalog : Catalog
        Sessions and the access audit live here.
    tokens : TokenRegistry
        The configured tokens.
    session_max_age_s : float
        Lifetime of a status-page session.
    cookie_secure : bool
        Always mark the session cookie ``Secure`` (it is, anyway, over HTTPS).
    throttle : LoginThrottle, optional
        Back-off of repeated failed logins per client address.
    """

    def __init__(
        self,
        catalog: Catalog,
        tokens: TokenRegistry,
        session_max_age_s: float = 8 * 3600.0,
        cookie_secure: bool = False,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.tokens = tokens
        self.sessions = SessionStore(catalog)
        self.access = AccessLog(catalog)
        self.session_max_age_s = session_max_age_s
        self.cookie_secure = cookie_secure
        self.throttle = throttle or LoginThrottle()

    def login_failed(self, request: Request, status: int) -> None:
        """A failed status-page login: counted for back-off, audited, logged (no token)."""
        client = client_address(request)
        failures = self.throttle.failed(client)
        self.access.record(
            "(unknown)", client, request.method, route_template(request),
            AccessAction.LOGIN_FAILED, status, None, (),
        )  # fmt: skip
        logger.warning(
            "status-page login failed",
            extra={"client": client, "status": status, "failures_in_a_row": failures},
        )

    # -- dependencies ----------------------------------------------------------------

    def _configured(self) -> None:
        if not self.tokens:
            raise HTTPException(503, "no API token is configured (http.tokens); access disabled")

    def bearer(self, request: Request) -> Principal:
        """FastAPI dependency: a valid ``Authorization: Bearer`` token (API and FHIR)."""
        self._configured()
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        entry = self.tokens.identify(value.strip()) if scheme.lower() == "bearer" else None
        if entry is None:
            logger.warning(
                "HTTP request refused: no valid bearer token",
                extra={"client": client_address(request), "route": route_template(request)},
            )
            raise HTTPException(
                401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        return Principal(entry.name, entry.access, AuthMethod.BEARER)

    def operator_bearer(self, request: Request) -> Principal:
        """FastAPI dependency: a bearer token with ``operate`` access."""
        principal = self.bearer(request)
        if not principal.may_operate:
            raise HTTPException(403, f"token {principal.name!r} has read access only")
        return principal

    def session(self, request: Request) -> Principal:
        """FastAPI dependency: a live status-page session (else a redirect to the login)."""
        self._configured()
        cookie = request.cookies.get(COOKIE)
        view = self.sessions.get(cookie) if cookie else None
        entry = self.tokens.live(view.token_name) if view is not None else None
        if view is None or entry is None or entry.access != TokenAccess.OPERATE:
            raise LoginRequired
        return Principal(view.token_name, entry.access, AuthMethod.SESSION, view.csrf)

    def bearer_or_session(self, request: Request) -> Principal:
        """FastAPI dependency: either (heatmap PNGs, the OpenAPI description)."""
        if "authorization" in request.headers:
            return self.bearer(request)
        try:
            return self.session(request)
        except LoginRequired:
            return self.bearer(request)  # answers 401 with WWW-Authenticate

    # -- sessions --------------------------------------------------------------------

    def open_session(self, request: Request, response: Response, token_name: str) -> None:
        """Create a session for ``token_name`` and set its cookie on ``response``."""
        cookie, _ = self.sessions.create(
            token_name, client_address(request), self.session_max_age_s
        )
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(self.session_max_age_s),
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.cookie_secure or request.url.scheme == "https",
        )

    def close_session(self, request: Request, response: Response) -> None:
        """Revoke the request's session and clear its cookie."""
        cookie = request.cookies.get(COOKIE)
        if cookie:
            self.sessions.revoke(cookie)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    # -- forms -----------------------------------------------------------------------

    @staticmethod
    def same_origin(request: Request) -> None:
        """Refuse a form posted from another origin (``Origin`` header, when sent)."""
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            if origin == "null":
                raise HTTPException(403, "cross-origin form refused")
            return
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != expected:
            raise HTTPException(403, "cross-origin form refused")

    async def form(self, request: Request) -> dict[str, str]:
        """The request's small URL-encoded form (one value per field)."""
        self.same_origin(request)
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            raise HTTPException(415, "expected an application/x-www-form-urlencoded form")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise HTTPException(413, f"form larger than {MAX_FORM_BYTES} bytes")
        try:
            pairs = parse_qsl(body.decode(), max_num_fields=16, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            raise HTTPException(400, "malformed form") from None
        return dict(pairs)

    async def checked_form(self, request: Request, principal: Principal) -> dict[str, str]:
        """The form of a state-changing request, after its CSRF token is checked."""
        fields = await self.form(request)
        given = fields.get("csrf", "")
        if principal.csrf is None or not hmac.compare_digest(given, principal.csrf):
            raise HTTPException(403, "missing or invalid CSRF token; reload the page")
        return fields

    # -- audit -----------------------------------------------------------------------

    def audit(
        self,
        request: Request,
        principal: Principal,
        action: AccessAction,
        resource_type: str | None = None,
        resources: Sequence[str] = (),
        status: int = 200,
    ) -> None:
        """Record one read or action in the catalog and the log (no query values)."""
        client = client_address(request)
        route = route_template(request)
        self.access.record(
            principal.name,
            client,
            request.method,
            route,
            action,
            status,
            resource_type,
            resources,
        )
        logger.info(
            "HTTP access",
            extra={
                "token": principal.name,
                "client": client,
                "route": route,
                "action": str(action),
                "resource_type": resource_type,
                "count": len(resources),
            },
        )
