"""``ihgamp audit`` and ``ihgamp sessions``: who read results over HTTP, who is logged in."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..catalog.access import AccessLog, SessionStore
from ..config import load_settings
from ..parts import open_catalog
from .common import console, handle_errors
from .serve import ConfigOption

__all__ = ["audit", "sessions"]


@handle_errors
def audit(
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many rows.")] = 50,
    token: Annotated[str | None, typer.Option(help="Only requests made with this token.")] = None,
    since_hours: Annotated[
        float | None, typer.Option(min=0, help="Only the last this many hours.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the HTTP access audit: reads of results and operator actions, newest first."""
    settings = load_settings(config)
    catalog = open_catalog(settings)
    since = None
    if since_hours is not None:
        since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=since_hours)
    try:
        entries = AccessLog(catalog).entries(limit=limit, token_name=token, since=since)
    finally:
        catalog.close()
    if as_json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    table = Table(title="HTTP access audit (newest first)")
    for column in ("When (UTC)", "Token", "Client", "Action", "Route", "Status", "What"):
        table.add_column(column, overflow="fold")
    for e in entries:
        shown = ", ".join(e.resources[:3]) + (" ..." if e.result_count > 3 else "")
        what = f"{e.resource_type or ''} x{e.result_count}: {shown}" if e.result_count else ""
        table.add_row(
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            escape(e.token_name),
            escape(e.client),
            str(e.action),
            escape(f"{e.method} {e.route}"),
            str(e.status),
            escape(what),
        )
    console.print(table)


@handle_errors
def sessions(
    config: ConfigOption = None,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Log out every session (or those of --token).")
    ] = False,
    token: Annotated[str | None, typer.Option(help="Only sessions opened with this token.")] = None,
) -> None:
    """List the status page's live sessions, or revoke them."""
    settings = load_settings(config)
    catalog = open_catalog(settings)
    try:
        store = SessionStore(catalog)
        if revoke:
            count = store.revoke_all(token)
            console.print(f"{count} sessions revoked")
            return
        live = [v for v in store.live() if token is None or v.token_name == token]
    finally:
        catalog.close()
    table = Table(title="Live status-page sessions")
    for column in ("Token", "Client", "Opened (UTC)", "Expires (UTC)"):
        table.add_column(column)
    for v in live:
        table.add_row(
            escape(v.token_name),
            escape(v.client),
            v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            v.expires_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)
