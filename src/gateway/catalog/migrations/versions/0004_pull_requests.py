"""Pull requests from the API, run through a leased queue (``pull_requests``).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add ``pull_requests``."""
    op.create_table(
        "pull_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pacs", sa.String(64), nullable=False),
        sa.Column("method", sa.String(16)),
        sa.Column("accession_number", sa.String(64)),
        sa.Column("study_uid", sa.String(64)),
        sa.Column("patient_id", sa.String(64)),
        sa.Column("study_date", sa.String(17)),
        sa.Column("requested_by", sa.String(64)),
        sa.Column("studies", sa.Text),
        sa.Column("completed", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_pull_requests_key", "pull_requests", ["key"])
    active = sa.text("state IN ('queued', 'running')")
    op.create_index(
        "ux_pull_requests_active_key",
        "pull_requests",
        ["key"],
        unique=True,
        sqlite_where=active,
        postgresql_where=active,
    )
    op.create_index("ix_pull_requests_state", "pull_requests", ["state"])


def downgrade() -> None:
    """Drop ``pull_requests``."""
    op.drop_table("pull_requests")
