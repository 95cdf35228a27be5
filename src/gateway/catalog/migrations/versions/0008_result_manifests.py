"""Output manifests: each analysis result's row records what it issued.

``analysis_results`` gain ``outputs``: the result key, its folder and files, the SR's
UIDs, its Observation identifiers, triage text and notes (JSON). Readers (the predecessor
of a new result, the web pages, the API) use it instead of opening ``result.json``.
Existing rows are filled from their ``result.json`` where it can be read; a row whose
file is gone keeps no manifest (its next result then names no predecessor, as before).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _manifest(document: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a ``result.json`` as revision 0008 writes it (frozen here)."""
    outputs = document["outputs"]
    triage = document.get("triage") or {}
    own = str(outputs["observation_identifier"])
    return {
        "key": str(outputs["key"]),
        "folder": str(outputs.get("folder") or ""),
        "files": [str(f) for f in outputs.get("files") or ()],
        "sr_series_uid": str(outputs["sr_series_instance_uid"]),
        "sr_sop_uid": str(outputs["sr_sop_instance_uid"]),
        "observation_identifier": own,
        "chain_identifier": str(outputs.get("fhir_observation_identifier") or own),
        "created": str(document.get("created") or "earlier"),
        "slides": len(document.get("slides") or ()),
        "triage_category": triage.get("category"),
        "triage_text": triage.get("text"),
        "notes": [str(n) for n in document.get("notes") or ()],
    }


def upgrade() -> None:
    """Add ``analysis_results.outputs`` and fill it from the existing results' files."""
    with op.batch_alter_table("analysis_results") as results:
        results.add_column(sa.Column("outputs", sa.Text))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, result_path FROM analysis_results")).all()
    for row_id, path in rows:
        try:
            manifest = _manifest(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        bind.execute(
            sa.text("UPDATE analysis_results SET outputs = :outputs WHERE id = :id"),
            {"outputs": json.dumps(manifest, sort_keys=True), "id": row_id},
        )


def downgrade() -> None:
    """Drop ``analysis_results.outputs``."""
    with op.batch_alter_table("analysis_results") as results:
        results.drop_column("outputs")
