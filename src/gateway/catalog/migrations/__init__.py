"""Catalog schema migrations with Alembic, on SQLite and PostgreSQL.

Revisions live in ``versions/`` and are frozen: each says what it changes, none is
rebuilt from today's table definitions. ``0001`` is release 0.1's schema and also brings
a database of the earlier ``schema_version`` mechanism (versions 1-3) up to it.

Policy:

* an **empty** database is created at the head revision when the gateway opens it (the
  embedded default needs no extra step);
* a database **behind** the head is refused with a message that says to run
  ``ihgamp db upgrade`` (back it up first; with several nodes, stop them, upgrade once,
  start them with the new release);
* a database **ahead** of this code is refused (upgrade the gateway).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from ...errors import CatalogError

__all__ = ["HEAD", "SchemaState", "SchemaStatus", "ensure_current", "schema_status", "upgrade"]

logger = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    return config


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


HEAD: str = str(_script().get_current_head())


class SchemaState(StrEnum):
    """Where a database stands relative to this code."""

    EMPTY = "empty"
    LEGACY = "legacy"  # managed by the pre-Alembic schema_version table
    BEHIND = "behind"
    CURRENT = "current"
    AHEAD = "ahead"


@dataclass(frozen=True)
class SchemaStatus:
    """A database's revision and what that means."""

    state: SchemaState
    revision: str | None
    head: str = HEAD

    def describe(self) -> str:
        """One line for ``ihgamp db status`` and error messages."""
        where = self.revision or "none"
        return f"catalog schema {self.state} (revision {where}, this gateway {self.head})"


def schema_status(engine: Engine) -> SchemaStatus:
    """Inspect ``engine``'s database."""
    inspector = inspect(engine)
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    if revision is None:
        if inspector.has_table("studies"):
            return SchemaStatus(SchemaState.LEGACY, None)
        return SchemaStatus(SchemaState.EMPTY, None)
    if revision == HEAD:
        return SchemaStatus(SchemaState.CURRENT, revision)
    known = {r.revision for r in _script().walk_revisions()}
    if revision not in known:
        return SchemaStatus(SchemaState.AHEAD, revision)
    return SchemaStatus(SchemaState.BEHIND, revision)


def upgrade(engine: Engine) -> tuple[SchemaStatus, SchemaStatus]:
    """Apply every pending revision; return the status before and after.

    Raises
    ------
    CatalogError
        If the database is ahead of this code.
    """
    before = schema_status(engine)
    if before.state == SchemaState.AHEAD:
        raise CatalogError(
            f"{before.describe()}: the database is newer than this gateway; upgrade the gateway"
        )
    if before.state != SchemaState.CURRENT:
        from alembic import command

        config = _config()
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":  # one migrator at a time
                conn.execute(text("SELECT pg_advisory_xact_lock(7426201)"))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        logger.info(
            "catalog migrated", extra={"from": before.revision or str(before.state), "to": HEAD}
        )
    return before, schema_status(engine)


def ensure_current(engine: Engine, create_empty: bool = True) -> SchemaStatus:
    """Create an empty database, accept a current one, refuse anything else.

    Raises
    ------
    CatalogError
        If the database needs ``ihgamp db upgrade`` or is newer than this gateway.
    """
    status = schema_status(engine)
    if status.state == SchemaState.EMPTY and create_empty:
        return upgrade(engine)[1]
    if status.state == SchemaState.CURRENT:
        return status
    if status.state == SchemaState.AHEAD:
        raise CatalogError(
            f"{status.describe()}: the database is newer than this gateway; upgrade the gateway"
        )
    raise CatalogError(
        f"{status.describe()}: run `ihgamp db upgrade --config <file>` "
        "(back up the catalog first; stop every node of a cluster while upgrading)"
    )
