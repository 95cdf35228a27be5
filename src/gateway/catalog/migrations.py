"""Versioned schema migrations, applied in order at start-up.

The ``schema_version`` table holds one row per applied migration. Each migration is a
function of a connection, run in its own transaction; a database newer than this code
is refused rather than guessed at.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, inspect, select, text
from sqlalchemy.engine import Connection, Engine

from ..errors import CatalogError
from .schema import Base

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "current_version", "migrate"]

logger = logging.getLogger(__name__)

_meta = MetaData()
_versions = Table(
    "schema_version",
    _meta,
    Column("version", Integer, primary_key=True),
    Column("description", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


def _v1_initial(conn: Connection) -> None:
    """Create studies, series, instances, associations and jobs."""
    tables = [
        Base.metadata.tables[name]
        for name in ("studies", "associations", "series", "instances", "jobs")
    ]
    Base.metadata.create_all(conn, tables=tables)


def _v2_results(conn: Connection) -> None:
    """Add deliveries (dispatch with retries) and observations (FHIR endpoint)."""
    tables = [Base.metadata.tables[name] for name in ("deliveries", "observations")]
    Base.metadata.create_all(conn, tables=tables)


def _v3_pull(conn: Connection) -> None:
    """Add studies.hold_reason (retrieves in progress) and pull_cursors (auto-pull)."""
    # A database created at v1 by this code already has the column (v1 builds the
    # current table definition); one created by an older release does not.
    if "hold_reason" not in {c["name"] for c in inspect(conn).get_columns("studies")}:
        conn.execute(text("ALTER TABLE studies ADD COLUMN hold_reason TEXT"))
    Base.metadata.create_all(conn, tables=[Base.metadata.tables["pull_cursors"]])


def _v4_http(conn: Connection) -> None:
    """Add FHIR Device/Provenance/ImagingStudy, the HTTP access audit and sessions."""
    names = ("fhir_resources", "http_access", "http_sessions")
    Base.metadata.create_all(conn, tables=[Base.metadata.tables[name] for name in names])


Migration = tuple[int, str, Callable[[Connection], None]]

MIGRATIONS: list[Migration] = [
    (1, "initial schema: studies, series, instances, associations, jobs", _v1_initial),
    (2, "deliveries and FHIR observations", _v2_results),
    (3, "retrieve holds and auto-pull cursors", _v3_pull),
    (4, "served FHIR resources, HTTP access audit and sessions", _v4_http),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def current_version(engine: Engine) -> int:
    """Return the highest applied migration (0 for an empty database)."""
    if not inspect(engine).has_table("schema_version"):
        return 0
    with engine.connect() as conn:
        versions = [row[0] for row in conn.execute(select(_versions.c.version))]
    return max(versions, default=0)


def migrate(engine: Engine) -> int:
    """Apply pending migrations; return the resulting version.

    Raises
    ------
    CatalogError
        If the database is newer than this code.
    """
    _meta.create_all(engine, tables=[_versions])
    version = current_version(engine)
    if version > SCHEMA_VERSION:
        raise CatalogError(
            f"the catalog is at schema version {version}, newer than this gateway "
            f"({SCHEMA_VERSION}); upgrade the gateway or point catalog.url elsewhere"
        )
    for number, description, apply in MIGRATIONS:
        if number <= version:
            continue
        with engine.begin() as conn:
            apply(conn)
            conn.execute(
                _versions.insert().values(
                    version=number, description=description, applied_at=dt.datetime.now(dt.UTC)
                )
            )
        logger.info("catalog migrated", extra={"version": number, "migration": description})
        version = number
    return version
