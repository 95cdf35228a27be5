"""Who read which results over HTTP, and the status page's operator sessions.

The DICOM side audits associations (``associations``); this is the HTTP side: one row
per read of results (API, FHIR, heatmaps, status page) and per operator action, naming
the token (never its value), the client address, the route and the ids returned.
Query values are not stored: a FHIR search by patient identifier is recorded by the
Observation ids it returned.

Sessions are opaque random cookies; the catalog keeps only their SHA-256, so a copy of
the catalog does not log anyone in. A session ends when it expires, when its owner logs
out, or when an operator revokes it (``ihgamp sessions --revoke``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update

from .catalog import CatalogStore, utcnow
from .schema import AccessAction, HttpAccess, HttpSession

__all__ = ["AccessEntry", "AccessLog", "SessionStore", "SessionView"]

#: At most this many resource ids are kept per audit row (the count is always kept).
MAX_RESOURCES_PER_ROW = 100


@dataclass(frozen=True)
class AccessEntry:
    """One audited HTTP request."""

    at: dt.datetime
    token_name: str
    client: str
    method: str
    route: str
    action: AccessAction
    status: int
    resource_type: str | None
    resources: tuple[str, ...]
    result_count: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``/api/audit``, ``ihgamp audit --json``)."""
        return {
            "at": self.at.isoformat(),
            "token": self.token_name,
            "client": self.client,
            "method": self.method,
            "route": self.route,
            "action": str(self.action),
            "status": self.status,
            "resource_type": self.resource_type,
            "resources": list(self.resources),
            "result_count": self.result_count,
        }


class AccessLog(CatalogStore):
    """The ``http_access`` table."""

    def record(
        self,
        token_name: str,
        client: str,
        method: str,
        route: str,
        action: AccessAction,
        status: int,
        resource_type: str | None = None,
        resources: Sequence[str] = (),
    ) -> None:
        """Append one audit row."""
        with self.catalog.session() as s:
            s.add(
                HttpAccess(
                    at=utcnow(),
                    token_name=token_name[:64],
                    client=client[:64],
                    method=method[:8],
                    route=route[:200],
                    action=action,
                    status=status,
                    resource_type=resource_type,
                    resources=json.dumps(list(resources[:MAX_RESOURCES_PER_ROW])),
                    result_count=len(resources),
                )
            )

    def entries(
        self,
        limit: int = 100,
        token_name: str | None = None,
        since: dt.datetime | None = None,
    ) -> list[AccessEntry]:
        """Audit rows, newest first."""
        with self.catalog.session() as s:
            q = select(HttpAccess).order_by(HttpAccess.id.desc()).limit(limit)
            if token_name is not None:
                q = q.where(HttpAccess.token_name == token_name)
            if since is not None:
                q = q.where(HttpAccess.at >= since)
            return [
                AccessEntry(
                    r.at,
                    r.token_name,
                    r.client,
                    r.method,
                    r.route,
                    AccessAction(r.action),
                    r.status,
                    r.resource_type,
                    tuple(json.loads(r.resources)),
                    r.result_count,
                )
                for r in s.scalars(q)
            ]


@dataclass(frozen=True)
class SessionView:
    """A live session (the cookie value itself is never stored)."""

    token_name: str
    csrf: str
    client: str
    created_at: dt.datetime
    expires_at: dt.datetime


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class SessionStore(CatalogStore):
    """The ``http_sessions`` table."""

    def create(self, token_name: str, client: str, max_age_s: float) -> tuple[str, SessionView]:
        """Open a session; return the cookie value (shown once) and the session."""
        cookie = secrets.token_urlsafe(32)
        now = utcnow()
        view = SessionView(
            token_name,
            secrets.token_urlsafe(32),
            client[:64],
            now,
            now + dt.timedelta(seconds=max_age_s),
        )
        with self.catalog.session() as s:
            # Sessions that ended over a day ago are of no further use.
            s.execute(
                delete(HttpSession).where(HttpSession.expires_at < now - dt.timedelta(days=1))
            )
            s.add(
                HttpSession(
                    id_hash=_digest(cookie),
                    token_name=token_name,
                    csrf=view.csrf,
                    client=view.client,
                    created_at=now,
                    expires_at=view.expires_at,
                )
            )
        return cookie, view

    def get(self, cookie: str, now: dt.datetime | None = None) -> SessionView | None:
        """The session of a cookie, if it is neither expired nor revoked."""
        now = now or utcnow()
        with self.catalog.session() as s:
            row = s.get(HttpSession, _digest(cookie))
            if row is None or row.revoked_at is not None or row.expires_at <= now:
                return None
            return SessionView(row.token_name, row.csrf, row.client, row.created_at, row.expires_at)

    def revoke(self, cookie: str) -> bool:
        """End one session (logout); return whether it was live."""
        with self.catalog.session() as s:
            result = s.execute(
                update(HttpSession)
                .where(HttpSession.id_hash == _digest(cookie), HttpSession.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            return bool(cast(CursorResult[Any], result).rowcount)

    def revoke_all(self, token_name: str | None = None) -> int:
        """End every live session (of one token); return how many."""
        now = utcnow()
        with self.catalog.session() as s:
            q = update(HttpSession).where(
                HttpSession.revoked_at.is_(None), HttpSession.expires_at > now
            )
            if token_name is not None:
                q = q.where(HttpSession.token_name == token_name)
            return int(cast(CursorResult[Any], s.execute(q.values(revoked_at=now))).rowcount)

    def live(self, now: dt.datetime | None = None) -> list[SessionView]:
        """Sessions neither expired nor revoked, newest first."""
        now = now or utcnow()
        with self.catalog.session() as s:
            rows = s.scalars(
                select(HttpSession)
                .where(HttpSession.revoked_at.is_(None), HttpSession.expires_at > now)
                .order_by(HttpSession.created_at.desc())
            )
            return [
                SessionView(r.token_name, r.csrf, r.client, r.created_at, r.expires_at)
                for r in rows
            ]
