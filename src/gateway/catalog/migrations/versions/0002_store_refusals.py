"""Audit of refused C-STOREs (``store_refusals``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``store_refusals``."""
    if sa.inspect(op.get_bind()).has_table("store_refusals"):
        return  # created by a development build's legacy migration 4
    op.create_table(
        "store_refusals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("association_id", sa.Integer, sa.ForeignKey("associations.id")),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_store_refusals_association_id", "store_refusals", ["association_id"])


def downgrade() -> None:
    """Drop ``store_refusals``."""
    op.drop_table("store_refusals")
