"""Analyses: one job per study and analysis request, per-analysis results, routing.

``jobs`` gain ``analysis``, ``job_key`` (``hrd`` for the jobs that existed: they scored
every slide with HRD), ``request`` and ``batch``, and a unique index on the queued job
of each study and key; ``studies.routing`` keeps the routing decision (requests,
refusals, "no analysis applies"); ``analysis_results`` holds the latest result of each
request.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the analysis columns, ``studies.routing`` and ``analysis_results``."""
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("analysis", sa.String(16), nullable=False, server_default="hrd"))
        jobs.add_column(sa.Column("job_key", sa.String(64), nullable=False, server_default="hrd"))
        jobs.add_column(sa.Column("request", sa.Text))
        jobs.add_column(sa.Column("batch", sa.String(32)))
    queued = sa.text("state = 'queued'")
    op.create_index(
        "ux_jobs_queued_key",
        "jobs",
        ["study_id", "job_key"],
        unique=True,
        sqlite_where=queued,
        postgresql_where=queued,
    )
    with op.batch_alter_table("studies") as studies:
        studies.add_column(sa.Column("routing", sa.Text))
    op.create_table(
        "analysis_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("job_key", sa.String(64), nullable=False),
        sa.Column("analysis", sa.String(16), nullable=False),
        sa.Column("result_path", sa.Text, nullable=False),
        sa.Column("call", sa.String(32)),
        sa.Column("value", sa.Float),
        sa.Column("modality_path", sa.String(32)),
        sa.Column("model_key", sa.String(160)),
        sa.Column("demo", sa.Boolean, nullable=False),
        sa.Column("scored_at", TS, nullable=False),
        sa.UniqueConstraint("study_id", "job_key"),
    )
    op.create_index("ix_analysis_results_study_id", "analysis_results", ["study_id"])
    # Results from before: each scored study's HRD result is its `hrd` row.
    op.execute(
        "INSERT INTO analysis_results (study_id, job_key, analysis, result_path, call, value, "
        "model_key, demo, scored_at) SELECT id, 'hrd', 'hrd', result_path, result_call, "
        "result_probability, model_key, false, coalesce(scored_at, updated_at) FROM studies "
        "WHERE result_path IS NOT NULL"
    )


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_table("analysis_results")
    with op.batch_alter_table("studies") as studies:
        studies.drop_column("routing")
    op.drop_index("ux_jobs_queued_key", table_name="jobs")
    with op.batch_alter_table("jobs") as jobs:
        for column in ("batch", "request", "job_key", "analysis"):
            jobs.drop_column(column)
