"""FHIR search over Observations: their effective time, last change and every identifier.

``observations`` gain ``effective_at`` (``effectiveDateTime``, for ``date``) and
``updated_at`` (for ``_lastUpdated`` and ``meta.lastUpdated``); the new table
``observation_identifiers`` holds each ``Observation.identifier`` (for ``identifier``:
an amended Observation is found by its own identifier and by the one it replaces).
Existing rows are filled from their stored resource.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _instant(text: str) -> dt.datetime:
    """An ``effectiveDateTime`` as UTC (frozen here: the code's copy may change)."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def upgrade() -> None:
    """Add the columns and the table, and fill them from the stored Observations."""
    with op.batch_alter_table("observations") as observations:
        observations.add_column(sa.Column("effective_at", sa.DateTime(timezone=True)))
        observations.add_column(sa.Column("updated_at", sa.DateTime(timezone=True)))
        observations.create_index("ix_observations_effective_at", ["effective_at"])
        observations.create_index("ix_observations_updated_at", ["updated_at"])
    op.create_table(
        "observation_identifiers",
        sa.Column(
            "observation_id",
            sa.String(64),
            sa.ForeignKey("observations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("system", sa.String(200), primary_key=True),
        sa.Column("value", sa.String(200), primary_key=True),
    )
    op.create_index(
        "ix_observation_identifiers_system_value", "observation_identifiers", ["system", "value"]
    )
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    rows = bind.execute(sa.text("SELECT id, resource, created_at FROM observations")).all()
    for row_id, text, created in rows:
        resource = json.loads(text)
        effective = resource.get("effectiveDateTime")
        at = None if effective is None else _instant(str(effective))
        bind.execute(
            sa.text(
                "UPDATE observations SET effective_at = :at, updated_at = :created WHERE id = :id"
            ),
            {
                "at": at.replace(tzinfo=None) if at and sqlite else at,
                "created": created,
                "id": row_id,
            },
        )
        pairs = {(str(i["system"]), str(i["value"])) for i in resource.get("identifier") or ()}
        for system, value in sorted(pairs):
            bind.execute(
                sa.text(
                    "INSERT INTO observation_identifiers (observation_id, system, value) "
                    "VALUES (:id, :system, :value)"
                ),
                {"id": row_id, "system": system, "value": value},
            )


def downgrade() -> None:
    """Drop the table and the columns."""
    op.drop_index("ix_observation_identifiers_system_value", "observation_identifiers")
    op.drop_table("observation_identifiers")
    with op.batch_alter_table("observations") as observations:
        observations.drop_index("ix_observations_updated_at")
        observations.drop_index("ix_observations_effective_at")
        observations.drop_column("updated_at")
        observations.drop_column("effective_at")
