"""``ihgamp db status`` and ``ihgamp db upgrade``: the catalog schema (Alembic)."""

from __future__ import annotations

import typer
from sqlalchemy import create_engine

from ..catalog import upgrade
from ..catalog.migrations import schema_status
from ..config import load_settings
from .common import console, handle_errors
from .serve import ConfigOption

__all__ = ["db_app"]

db_app = typer.Typer(
    help=(
        "The catalog database schema. A new, empty catalog is created by the gateway; an "
        "existing one is upgraded only by `ihgamp db upgrade` (back it up first; stop every "
        "node of a cluster, upgrade once, then start the nodes of the new release)."
    ),
    no_args_is_help=True,
)


@db_app.command("status")
@handle_errors
def status(config: ConfigOption = None) -> None:
    """Show the catalog's schema revision and whether this gateway can use it."""
    settings = load_settings(config)
    engine = create_engine(settings.catalog.connect_url(), hide_parameters=True)
    try:
        console.print(schema_status(engine).describe())
    finally:
        engine.dispose()


@db_app.command("upgrade")
@handle_errors
def upgrade_cmd(config: ConfigOption = None) -> None:
    """Migrate the catalog to this gateway's schema (idempotent)."""
    settings = load_settings(config)
    engine = create_engine(settings.catalog.connect_url(), hide_parameters=True)
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    console.print(f"catalog schema {before.revision or before.state} -> {after.revision}")
