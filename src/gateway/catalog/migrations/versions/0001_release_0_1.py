"""The catalog of release 0.1 (legacy schema versions 1-3), frozen.

Creates each table only where it is missing and adds ``studies.hold_reason`` where a
legacy version-1/2 database lacks it, so the same revision brings an empty database, or
one managed by the legacy ``schema_version`` mechanism at any version, to the release
0.1 schema. A row ``99`` in ``schema_version`` then makes a gateway older than Alembic
refuse the database instead of guessing at it.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _tables() -> dict[str, list[sa.schema.SchemaItem]]:
    return {
        "schema_version": [
            sa.Column("version", sa.Integer, primary_key=True),
            sa.Column("description", sa.String(200), nullable=False),
            sa.Column("applied_at", TS, nullable=False),
        ],
        "studies": [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("study_uid", sa.String(64), nullable=False),
            sa.Column("accession_number", sa.String(64)),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("state_reason", sa.Text),
            sa.Column("forced", sa.Boolean, nullable=False),
            sa.Column("first_received_at", TS, nullable=False),
            sa.Column("last_received_at", TS, nullable=False),
            sa.Column("completed_at", TS),
            sa.Column("scored_at", TS),
            sa.Column("updated_at", TS, nullable=False),
            sa.Column("result_path", sa.Text),
            sa.Column("result_call", sa.String(16)),
            sa.Column("result_probability", sa.Float),
            sa.Column("model_key", sa.String(160)),
            sa.Column("hold_reason", sa.Text),
        ],
        "associations": [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("direction", sa.String(8), nullable=False),
            sa.Column("calling_ae", sa.String(16), nullable=False),
            sa.Column("called_ae", sa.String(16), nullable=False),
            sa.Column("peer_host", sa.String(64), nullable=False),
            sa.Column("peer_port", sa.Integer, nullable=False),
            sa.Column("tls", sa.Boolean, nullable=False),
            sa.Column("started_at", TS, nullable=False),
            sa.Column("ended_at", TS),
            sa.Column("result", sa.String(32), nullable=False),
            sa.Column("reason", sa.Text),
            sa.Column("instances_received", sa.Integer, nullable=False),
            sa.Column("instances_failed", sa.Integer, nullable=False),
            sa.Column("bytes_received", sa.BigInteger, nullable=False),
        ],
        "series": [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
            sa.Column("series_uid", sa.String(64), nullable=False),
            sa.Column("modality", sa.String(16)),
            sa.Column("sop_class_uid", sa.String(64), nullable=False),
            sa.Column("instance_count", sa.Integer, nullable=False),
            sa.Column("finest_volume_mpp", sa.Float),
            sa.Column("first_received_at", TS, nullable=False),
            sa.Column("last_received_at", TS, nullable=False),
        ],
        "instances": [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("series_id", sa.Integer, sa.ForeignKey("series.id"), nullable=False),
            sa.Column("sop_instance_uid", sa.String(64), nullable=False),
            sa.Column("sop_class_uid", sa.String(64), nullable=False),
            sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
            sa.Column("image_flavor", sa.String(16)),
            sa.Column("pixel_spacing_um", sa.Float),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("current", sa.Boolean, nullable=False),
            sa.Column("path", sa.Text, nullable=False),
            sa.Column("size", sa.BigInteger, nullable=False),
            sa.Column("sha256", sa.String(64), nullable=False),
            sa.Column("received_at", TS, nullable=False),
            sa.Column("association_id", sa.Integer, sa.ForeignKey("associations.id")),
            sa.UniqueConstraint("sop_instance_uid", "version"),
        ],
        "jobs": [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("max_attempts", sa.Integer, nullable=False),
            sa.Column("lease_owner", sa.String(128)),
            sa.Column("lease_expires_at", TS),
            sa.Column("next_attempt_at", TS, nullable=False),
            sa.Column("last_error", sa.Text),
            sa.Column("created_at", TS, nullable=False),
            sa.Column("updated_at", TS, nullable=False),
            sa.Column("finished_at", TS),
        ],
        "deliveries": [
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
            sa.Column("report_key", sa.String(64), nullable=False),
            sa.Column("destination", sa.String(64), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("files", sa.Text, nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("max_attempts", sa.Integer, nullable=False),
            sa.Column("last_error", sa.Text),
            sa.Column("next_attempt_at", TS, nullable=False),
            sa.Column("created_at", TS, nullable=False),
            sa.Column("updated_at", TS, nullable=False),
            sa.Column("delivered_at", TS),
            sa.UniqueConstraint("report_key", "destination"),
        ],
        "observations": [
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("study_id", sa.Integer, sa.ForeignKey("studies.id"), nullable=False),
            sa.Column("patient_system", sa.String(200), nullable=False),
            sa.Column("patient_value", sa.String(64), nullable=False),
            sa.Column("code_system", sa.String(200), nullable=False),
            sa.Column("code", sa.String(64), nullable=False),
            sa.Column("resource", sa.Text, nullable=False),
            sa.Column("created_at", TS, nullable=False),
        ],
        "pull_cursors": [
            sa.Column("pacs", sa.String(64), primary_key=True),
            sa.Column("last_success_at", TS, nullable=False),
            sa.Column("last_attempt_at", TS),
            sa.Column("last_error", sa.Text),
        ],
    }


#: (table, columns, unique) of every index of release 0.1.
INDEXES = [
    ("studies", ["study_uid"], True),
    ("studies", ["state"], False),
    ("series", ["series_uid"], True),
    ("series", ["study_id"], False),
    ("instances", ["series_id"], False),
    ("instances", ["sop_instance_uid"], False),
    ("jobs", ["study_id"], False),
    ("jobs", ["state"], False),
    ("jobs", ["next_attempt_at"], False),
    ("deliveries", ["study_id"], False),
    ("deliveries", ["destination"], False),
    ("deliveries", ["state"], False),
    ("deliveries", ["next_attempt_at"], False),
    ("observations", ["study_id"], False),
    ("observations", ["patient_system"], False),
    ("observations", ["patient_value"], False),
    ("observations", ["code"], False),
]


def upgrade() -> None:
    """Create what is missing of the release 0.1 schema."""
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, columns in _tables().items():
        if name not in existing:
            op.create_table(name, *columns)
            for table, cols, unique in INDEXES:
                if table == name:
                    op.create_index(f"ix_{table}_{'_'.join(cols)}", table, cols, unique=unique)
    if "studies" in existing:
        names = {c["name"] for c in inspector.get_columns("studies")}
        if "hold_reason" not in names:  # a legacy version-1/2 database
            op.add_column("studies", sa.Column("hold_reason", sa.Text))
    versions = sa.table(
        "schema_version",
        sa.column("version", sa.Integer),
        sa.column("description", sa.String),
        sa.column("applied_at", TS),
    )
    op.execute(versions.delete().where(versions.c.version == 99))
    op.bulk_insert(
        versions,
        [
            {
                "version": 99,
                "description": "managed by Alembic (alembic_version); upgrade the gateway",
                "applied_at": dt.datetime.now(dt.UTC),
            }
        ],
    )


def downgrade() -> None:
    """Release 0.1 is the oldest schema Alembic manages."""
    raise NotImplementedError("the release 0.1 schema is the base; restore a backup instead")
