"""Results are rows only: HRD's outputs move to their request's folder, ``studies.result_*`` go.

Before this revision HRD's results lay at the root of the study's outbox folder and the
study row repeated them (``result_path``, ``result_call``, ``result_probability``,
``model_key``). Every analysis now writes to ``<study>/<job folder>/`` and its
``analysis_results`` row is the only record. For each result still at a study folder's
root, this revision:

1. moves its files (``result.json``, ``sr.dcm``, ``heatmap-<n>.dcm``/``.png``,
   ``fhir-bundle.json``) into ``<study>/hrd/`` (rename, same file system);
2. points its row there (``result_path``, the manifest's ``folder``) and its pending or
   finished deliveries at the moved files (``hrd/sr.dcm``...);
3. drops the study columns.

Files are moved before the database changes; a run interrupted between the two finds
the files already moved and goes on (a move whose target exists and whose source is gone
is done). Result files that are gone are left alone: the row keeps its manifest.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: The folder of the results that lay at the study folder's root (``job_folder("hrd")``).
FOLDER = "hrd"
#: What the report writer put at the root (frozen here: this revision's view).
_ROOT_FILE = re.compile(r"^(result\.json|sr\.dcm|fhir-bundle\.json|heatmap-[0-9]{1,4}\.(dcm|png))$")
_COLUMNS = ("result_path", "result_call", "result_probability", "model_key")


def _move(study_folder: Path) -> None:
    """Move the root result files of one study folder into ``hrd/`` (idempotent)."""
    if not study_folder.is_dir():
        return
    target = study_folder / FOLDER
    for path in sorted(study_folder.iterdir()):
        if path.is_file() and _ROOT_FILE.match(path.name):
            target.mkdir(exist_ok=True)
            os.replace(path, target / path.name)


def _moved(files: list[str]) -> list[str]:
    return [f if "/" in f else f"{FOLDER}/{f}" for f in files]


def upgrade() -> None:
    """Move root results into ``hrd/``, repoint rows and deliveries, drop the study columns."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT r.id, r.study_id, r.result_path, r.outputs, s.study_uid "
            "FROM analysis_results r JOIN studies s ON s.id = r.study_id"
        )
    ).all()
    for row_id, study_id, path, outputs, study_uid in rows:
        result = Path(path)
        if result.parent.name != study_uid:  # already in a request folder
            continue
        _move(result.parent)
        manifest = json.loads(outputs) if outputs else None
        if manifest is not None:
            manifest["folder"] = FOLDER
        bind.execute(
            sa.text(
                "UPDATE analysis_results SET result_path = :path, outputs = :outputs WHERE id = :id"
            ),
            {
                "path": str(result.parent / FOLDER / result.name),
                "outputs": None if manifest is None else json.dumps(manifest, sort_keys=True),
                "id": row_id,
            },
        )
        deliveries = bind.execute(
            sa.text("SELECT id, files FROM deliveries WHERE study_id = :study"),
            {"study": study_id},
        ).all()
        for delivery_id, files in deliveries:
            names = list(json.loads(files))
            if any("/" not in f for f in names):
                bind.execute(
                    sa.text("UPDATE deliveries SET files = :files WHERE id = :id"),
                    {"files": json.dumps(_moved(names)), "id": delivery_id},
                )
    with op.batch_alter_table("studies") as studies:
        for column in _COLUMNS:
            studies.drop_column(column)


def downgrade() -> None:
    """Add the study columns back (empty; the files stay in their request folders)."""
    with op.batch_alter_table("studies") as studies:
        studies.add_column(sa.Column("result_path", sa.Text))
        studies.add_column(sa.Column("result_call", sa.String(16)))
        studies.add_column(sa.Column("result_probability", sa.Float))
        studies.add_column(sa.Column("model_key", sa.String(160)))
