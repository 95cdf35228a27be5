"""FHIR resources served by the gateway, the HTTP access audit and status-page sessions.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add ``fhir_resources``, ``http_access`` and ``http_sessions``."""
    op.create_table(
        "fhir_resources",
        sa.Column("resource_type", sa.String(32), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id")),
        sa.Column("search_key", sa.String(256), nullable=False),
        sa.Column("resource", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_fhir_resources_study_id", "fhir_resources", ["study_id"])
    op.create_index("ix_fhir_resources_search_key", "fhir_resources", ["search_key"])
    op.create_table(
        "http_access",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("token_name", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("resource_type", sa.String(32)),
        sa.Column("resources", sa.Text, nullable=False),
        sa.Column("result_count", sa.Integer, nullable=False),
    )
    op.create_index("ix_http_access_at", "http_access", ["at"])
    op.create_index("ix_http_access_token_name", "http_access", ["token_name"])
    op.create_table(
        "http_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("token_name", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
    )
    op.create_index("ix_http_sessions_token_name", "http_sessions", ["token_name"])
    op.create_index("ix_http_sessions_expires_at", "http_sessions", ["expires_at"])


def downgrade() -> None:
    """Drop them."""
    for name in ("http_sessions", "http_access", "fhir_resources"):
        op.drop_table(name)
