"""Intake safety: one patient per study, the study's first sender, results held for review.

``studies`` gain ``patient_identity`` (keyed digests of the first instances' patient
identity; no patient data), ``opened_by`` (the first sender: calling AE title or
``pacs:<name>``) and ``review_reason`` (a result withheld for a person to look at);
``analysis_results`` gain ``inputs_key`` (model + exact input files, so that a re-routing
that leaves a request's inputs unchanged does not run it again); ``site_keys`` keeps the
fingerprint of the identity key. Studies recorded before this revision get the identity
of one of their instances when a receiver starts.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the columns."""
    with op.batch_alter_table("studies") as studies:
        studies.add_column(sa.Column("patient_identity", sa.String(200)))
        studies.add_column(sa.Column("opened_by", sa.String(80)))
        studies.add_column(sa.Column("review_reason", sa.Text))
    with op.batch_alter_table("analysis_results") as results:
        results.add_column(sa.Column("inputs_key", sa.String(64)))
    op.create_table(
        "site_keys",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_table("site_keys")
    with op.batch_alter_table("analysis_results") as results:
        results.drop_column("inputs_key")
    with op.batch_alter_table("studies") as studies:
        for column in ("review_reason", "opened_by", "patient_identity"):
            studies.drop_column(column)
