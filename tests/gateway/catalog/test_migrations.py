"""Alembic migrations on SQLite and PostgreSQL, from the catalog release 0.1 shipped."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from typer.testing import CliRunner

from gateway.catalog import HEAD, Catalog, SchemaState, StudyState, schema_status, upgrade
from gateway.catalog.schema import Base
from gateway.cli.app import app
from gateway.errors import CatalogError
from support.gateway import send, settings_dict, tiny_wsi, write_toml
from support.listener import start_listener

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / "data"


def _load_release(url: str) -> None:
    """A catalog exactly as release 0.1 left it (a dump of what its code created)."""
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        db.executescript((DATA / "catalog-release-0.1.sqlite.sql").read_text())
        db.close()
        return
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql((DATA / "catalog-release-0.1.postgresql.sql").read_text())
    engine.dispose()


def _at_revision(url: str, revision: str) -> Engine:
    """An engine on a catalog upgraded only as far as ``revision`` (the state tests start from)."""
    from alembic import command

    from gateway.catalog.migrations import _config

    engine = create_engine(url)
    config = _config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    return engine


def test_a_new_catalog_is_created_at_head_and_matches_the_models(catalog_url: str) -> None:
    catalog = Catalog(catalog_url)
    assert catalog.schema.state == SchemaState.CURRENT and catalog.schema.revision == HEAD
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    extra = [d for d in diff if not (d[0] == "remove_table" and d[1].name == "schema_version")]
    assert extra == [], extra  # the frozen revisions build exactly the current tables
    catalog.close()
    assert Catalog(catalog_url).schema.state == SchemaState.CURRENT  # idempotent


def test_the_release_catalog_is_refused_until_upgraded_then_keeps_its_data(
    catalog_url: str, tmp_path: Path
) -> None:
    _load_release(catalog_url)
    with pytest.raises(CatalogError, match="run `ihgamp db upgrade"):
        Catalog(catalog_url)
    config = write_toml(tmp_path / "gw.toml", settings_dict(tmp_path, catalog={"url": catalog_url}))
    runner = CliRunner()
    status = runner.invoke(app, ["db", "status", "--config", str(config)])
    assert status.exit_code == 0 and "legacy" in status.output, status.output
    result = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"-> {HEAD}" in result.output
    catalog = Catalog(catalog_url)
    scored = catalog.study("1.2.826.0.1.3680043.8.498.1")
    assert scored is not None and scored.state == StudyState.SCORED
    from gateway.catalog import AnalysisStore

    (kept,) = AnalysisStore(catalog).results("1.2.826.0.1.3680043.8.498.1")
    assert kept.analysis == "hrd" and kept.value == pytest.approx(0.12)
    assert catalog.study("1.2.826.0.1.3680043.8.498.2").state == StudyState.RECEIVING  # type: ignore[union-attr]
    with catalog.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM deliveries")).scalar() == 1
        assert conn.execute(text("SELECT max(version) FROM schema_version")).scalar() == 99
    catalog.close()
    # And the gateway runs on it: a listener stores into the upgraded catalog.
    running = start_listener(tmp_path / "gw", catalog={"url": catalog_url})
    try:
        study = "1.2.826.0.1.3680043.8.498.1"  # the release's scored study gets a new slide
        assert send(running.port, [tiny_wsi(tmp_path / "new", study)]) == [0]
        reopened = running.catalog.study(study)
        assert reopened is not None and reopened.state == StudyState.RECEIVING
        assert sum(x.instance_count for x in reopened.series) == 2
    finally:
        running.server.stop()
        running.catalog.close()


def test_a_catalog_newer_than_this_gateway_is_refused(catalog_url: str) -> None:
    Catalog(catalog_url).close()
    engine = create_engine(catalog_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    assert schema_status(engine).state == SchemaState.AHEAD
    with pytest.raises(CatalogError, match="newer than this gateway"):
        upgrade(engine)
    engine.dispose()
    with pytest.raises(CatalogError, match="newer than this gateway"):
        Catalog(catalog_url)


def test_0006_gives_existing_jobs_and_results_the_hrd_analysis(catalog_url: str) -> None:
    from gateway.catalog import AnalysisStore, JobStore

    engine = _at_revision(catalog_url, "0005")  # the catalog as the release before analyses left it
    now = "2026-11-28 06:10:41"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO studies (id, study_uid, state, forced, first_received_at, "
                "last_received_at, updated_at, result_path, result_call, result_probability, "
                "model_key, scored_at) VALUES (1, '1.2.3.1', 'scored', false, :t, :t, :t, "
                "'/outbox/1.2.3.1/result.json', 'hrd-negative', 0.25, 'model-key', :t), "
                "(2, '1.2.3.2', 'queued', false, :t, :t, :t, NULL, NULL, NULL, NULL, NULL)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO jobs (id, study_id, kind, state, attempts, max_attempts, "
                "next_attempt_at, created_at, updated_at) VALUES "
                "(1, 1, 'score', 'done', 1, 3, :t, :t, :t), "
                "(2, 2, 'score', 'queued', 0, 3, :t, :t, :t)"
            ),
            {"t": now},
        )
    with pytest.raises(CatalogError, match="run `ihgamp db upgrade"):
        Catalog(catalog_url)
    before, after = upgrade(engine)
    assert before.revision == "0005" and after.revision == HEAD
    catalog = Catalog(catalog_url)
    try:
        views = JobStore(catalog).jobs()
        assert {(j.job_id, j.analysis, j.job_key) for j in views} == {
            (1, "hrd", "hrd"),
            (2, "hrd", "hrd"),
        }
        (result,) = AnalysisStore(catalog).results("1.2.3.1")
        assert (result.job_key, result.analysis, result.call) == ("hrd", "hrd", "hrd-negative")
        assert result.value == pytest.approx(0.25) and not result.demo
        assert AnalysisStore(catalog).routing("1.2.3.1") is None  # routed before analyses
        # The queued job is the study's one queued HRD job: queuing again reuses it ...
        assert JobStore(catalog).enqueue("1.2.3.2", 3) == 2
        # ... and the database itself refuses a second one.
        with catalog.engine.begin() as conn, pytest.raises(Exception, match="(?i)unique"):
            conn.execute(
                text(
                    "INSERT INTO jobs (study_id, kind, analysis, job_key, state, attempts, "
                    "max_attempts, next_attempt_at, created_at, updated_at) VALUES "
                    "(2, 'score', 'hrd', 'hrd', 'queued', 0, 3, :t, :t, :t)"
                ),
                {"t": now},
            )
        # The claimed legacy job carries no request: every slide with HRD, as before.
        claimed = JobStore(catalog).claim("w", 30)
        assert claimed is not None and (claimed.analysis, claimed.request) == ("hrd", None)
    finally:
        catalog.close()
        engine.dispose()


def test_0007_keeps_studies_and_results_and_leaves_their_identity_to_the_receiver(
    catalog_url: str, tmp_path: Path
) -> None:
    from gateway.catalog import AnalysisStore

    engine = _at_revision(catalog_url, "0006")
    now = "2026-12-01 08:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO studies (id, study_uid, state, forced, first_received_at, "
                "last_received_at, updated_at) VALUES (1, '1.2.3.7', 'scored', false, :t, :t, :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO analysis_results (study_id, job_key, analysis, result_path, call, "
                "demo, scored_at) VALUES (1, 'her2:A1', 'her2', '/o/r.json', 'her2-2+', true, :t)"
            ),
            {"t": now},
        )
    before, after = upgrade(engine)
    assert (before.revision, after.revision) == ("0006", HEAD)
    catalog = Catalog(catalog_url)
    try:
        study = catalog.study("1.2.3.7")
        assert (
            study is not None and study.state == StudyState.SCORED and study.review_reason is None
        )
        (result,) = AnalysisStore(catalog).results("1.2.3.7")
        assert (result.job_key, result.call) == ("her2:A1", "her2-2+")
        with catalog.engine.connect() as conn:
            row = conn.execute(text("SELECT patient_identity, opened_by FROM studies")).one()
        assert tuple(row) == (None, None)  # set by the receiver from the study's files
    finally:
        catalog.close()
        engine.dispose()


def test_0008_records_each_result_manifest_from_its_file(catalog_url: str, tmp_path: Path) -> None:
    """HRD and HER2 results from before 0008 get their manifest; an unreadable one none."""
    from gateway.catalog import AnalysisStore

    engine = _at_revision(catalog_url, "0007")
    hrd = tmp_path / "1.2.3.8" / "result.json"
    her2 = tmp_path / "1.2.3.8" / "her2-A1" / "result.json"
    her2.parent.mkdir(parents=True)
    outputs = {
        "key": "k-hrd",
        "sr_sop_instance_uid": "1.2.9.1",
        "sr_series_instance_uid": "1.2.9.2",
        "observation_identifier": "obs-hrd-2",
        "fhir_observation_identifier": "obs-hrd-1",
        "files": ["sr.dcm", "heatmap-1.dcm"],
        "folder": "",
    }
    hrd.write_text(
        json.dumps(
            {
                "created": "2026-11-30T10:00:00+00:00",
                "slides": [{}, {}],
                "triage": {"category": "usual-criteria", "text": "HRD unlikely"},
                "notes": ["a note"],
                "outputs": outputs,
            }
        )
    )
    her2.write_text(json.dumps({"outputs": {**outputs, "key": "k-her2", "folder": "her2-A1"}}))
    now = "2026-12-01 08:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO studies (id, study_uid, state, forced, first_received_at, "
                "last_received_at, updated_at) VALUES (1, '1.2.3.8', 'scored', false, :t, :t, :t)"
            ),
            {"t": now},
        )
        for key, analysis, path in (
            ("hrd", "hrd", hrd),
            ("her2:A1", "her2", her2),
            ("her2:B2", "her2", tmp_path / "gone.json"),
        ):
            conn.execute(
                text(
                    "INSERT INTO analysis_results (study_id, job_key, analysis, result_path, "
                    "demo, scored_at) VALUES (1, :key, :analysis, :path, true, :t)"
                ),
                {"key": key, "analysis": analysis, "path": str(path), "t": now},
            )
    before, after = upgrade(engine)
    assert (before.revision, after.revision) == ("0007", HEAD)
    catalog = Catalog(catalog_url)
    try:
        rows = {r.job_key: r.outputs for r in AnalysisStore(catalog).results("1.2.3.8")}
    finally:
        catalog.close()
        engine.dispose()
    hrd_manifest = rows["hrd"]
    assert hrd_manifest is not None
    assert (hrd_manifest.key, hrd_manifest.chain_identifier, hrd_manifest.slides) == (
        "k-hrd",
        "obs-hrd-1",
        2,
    )
    assert hrd_manifest.triage_text == "HRD unlikely" and hrd_manifest.notes == ("a note",)
    assert (
        hrd_manifest.files == ("sr.dcm", "heatmap-1.dcm") and hrd_manifest.folder == "hrd"
    )  # 0009
    assert rows["her2:A1"] is not None and rows["her2:A1"].folder == "her2-A1"
    assert rows["her2:B2"] is None  # its file is gone: no manifest, nothing invented


def test_0009_moves_root_results_into_their_folder_and_drops_the_study_columns(
    catalog_url: str, tmp_path: Path
) -> None:
    """From a 0006 catalog with an HRD result at the study root and a HER2 one in its folder."""
    from gateway.catalog import AnalysisStore
    from gateway.catalog.deliveries import DeliveryStore
    from gateway.web.views import analysis_maps

    engine = _at_revision(catalog_url, "0006")
    study = tmp_path / "outbox" / "1.2.3.9"
    (study / "her2-A1").mkdir(parents=True)
    outputs = {
        "key": "k-hrd",
        "sr_sop_instance_uid": "1.2.9.1",
        "sr_series_instance_uid": "1.2.9.2",
        "observation_identifier": "obs-hrd",
        "files": ["sr.dcm", "heatmap-1.dcm", "heatmap-1.png", "fhir-bundle.json"],
        "folder": "",
    }
    (study / "result.json").write_text(json.dumps({"outputs": outputs, "call": "hrd-unlikely"}))
    for name in outputs["files"]:
        (study / name).write_bytes(name.encode())
    (study / "notes.txt").write_text("an operator's file stays")
    her2_outputs = {**outputs, "key": "k-her2", "folder": "her2-A1", "files": ["sr.dcm"]}
    (study / "her2-A1" / "result.json").write_text(json.dumps({"outputs": her2_outputs}))
    (study / "her2-A1" / "sr.dcm").write_bytes(b"her2 sr")
    now = "2026-12-01 08:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO studies (id, study_uid, state, forced, first_received_at, "
                "last_received_at, updated_at, result_path, result_call, result_probability, "
                "model_key, scored_at) VALUES (1, '1.2.3.9', 'scored', false, :t, :t, :t, "
                ":path, 'hrd-unlikely', 0.2, 'engine-key', :t)"
            ),
            {"t": now, "path": str(study / "result.json")},
        )
        for key, analysis, path in (
            ("hrd", "hrd", study / "result.json"),
            ("her2:A1", "her2", study / "her2-A1" / "result.json"),
        ):
            conn.execute(
                text(
                    "INSERT INTO analysis_results (study_id, job_key, analysis, result_path, "
                    "call, model_key, demo, scored_at) VALUES "
                    "(1, :key, :analysis, :path, 'x', 'engine-key', true, :t)"
                ),
                {"key": key, "analysis": analysis, "path": str(path), "t": now},
            )
        for report_key, destination, files, state in (
            ("k-hrd", "pacs", ["sr.dcm", "heatmap-1.dcm"], "pending"),
            ("k-hrd", "ehr", ["fhir-bundle.json"], "delivered"),
            ("k-her2", "pacs", ["her2-A1/sr.dcm"], "pending"),
        ):
            conn.execute(
                text(
                    "INSERT INTO deliveries (study_id, report_key, destination, kind, files, "
                    "state, attempts, max_attempts, next_attempt_at, created_at, updated_at) "
                    "VALUES (1, :key, :destination, 'dicom', :files, :state, 0, 3, :t, :t, :t)"
                ),
                {
                    "key": report_key,
                    "destination": destination,
                    "files": json.dumps(files),
                    "state": state,
                    "t": now,
                },
            )
    before, after = upgrade(engine)
    assert (before.revision, after.revision) == ("0006", HEAD)

    moved = study / "hrd"
    assert sorted(p.name for p in moved.iterdir()) == sorted([*outputs["files"], "result.json"])
    assert (moved / "sr.dcm").read_bytes() == b"sr.dcm"
    assert sorted(p.name for p in study.iterdir()) == ["her2-A1", "hrd", "notes.txt"]
    assert (study / "her2-A1" / "sr.dcm").read_bytes() == b"her2 sr"  # untouched
    catalog = Catalog(catalog_url)
    try:
        rows = {r.job_key: r for r in AnalysisStore(catalog).results("1.2.3.9")}
        assert rows["hrd"].result_path == str(moved / "result.json")
        hrd_manifest = rows["hrd"].outputs
        assert hrd_manifest is not None and hrd_manifest.folder == "hrd"
        assert hrd_manifest.key == "k-hrd"  # filled by 0008 from the file, then moved
        her2_manifest = rows["her2:A1"].outputs
        assert her2_manifest is not None and her2_manifest.folder == "her2-A1"
        assert rows["her2:A1"].result_path == str(study / "her2-A1" / "result.json")
        files = sorted(d.files for d in DeliveryStore(catalog).deliveries(study_uid="1.2.3.9"))
        assert files == [
            ("her2-A1/sr.dcm",),
            ("hrd/fhir-bundle.json",),
            ("hrd/sr.dcm", "hrd/heatmap-1.dcm"),
        ]
        maps = analysis_maps(list(rows.values()))
        assert [(m.job_key, m.names) for m in maps] == [("hrd", ["hrd/heatmap-1.png"])]
        snapshot = catalog.study("1.2.3.9")
        assert snapshot is not None and snapshot.scored_at is not None
        columns = {c["name"] for c in inspect(catalog.engine).get_columns("studies")}
        assert "scored_at" in columns and not columns & {
            "result_path",
            "result_call",
            "result_probability",
            "model_key",
        }
    finally:
        catalog.close()
        engine.dispose()


def test_0010_makes_stored_observations_searchable_by_date_and_each_identifier(
    catalog_url: str,
) -> None:
    """An amended Observation stored before 0010 is found by either identifier and its date."""
    from gateway.catalog.observations import ObservationQuery, ObservationStore, Token
    from gateway.web.fhir_search import date_bounds

    engine = _at_revision(catalog_url, "0009")
    resource = {
        "resourceType": "Observation",
        "id": "obs-1",
        "identifier": [
            {"system": "urn:ihgamp:observation", "value": "first"},
            {"system": "urn:ihgamp:observation", "value": "second"},
        ],
        "subject": {"identifier": {"system": "urn:pid", "value": "P1"}},
        "effectiveDateTime": "2026-11-30T23:30:00+01:00",
    }
    now = "2026-12-01 08:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO studies (id, study_uid, state, forced, first_received_at, "
                "last_received_at, updated_at) VALUES (1, '1.2.3.10', 'scored', false, :t, :t, :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO observations (id, study_id, patient_system, patient_value, "
                "code_system, code, resource, created_at) VALUES ('obs-1', 1, 'urn:pid', 'P1', "
                "'http://loinc.org', '107286-7', :resource, :t)"
            ),
            {"resource": json.dumps(resource), "t": now},
        )
    upgrade(engine)
    engine.dispose()
    catalog = Catalog(catalog_url)
    store = ObservationStore(catalog)
    for value in ("first", "second"):
        query = ObservationQuery(identifiers=(Token("urn:ihgamp:observation", value),))
        assert [r["id"] for r in store.search(query).resources] == ["obs-1"]
    on_the_30th = ObservationQuery(effective=(date_bounds("date", "2026-11-30"),))
    assert store.search(on_the_30th).total == 1  # 22:30 UTC
    assert (
        store.search(ObservationQuery(effective=(date_bounds("date", "ge2026-12-01"),))).total == 0
    )
    updated = ObservationQuery(last_updated=(date_bounds("_lastUpdated", "2026-12-01"),))
    assert store.search(updated).total == 1  # from the row's creation time
    assert store.get("obs-1")["meta"]["lastUpdated"].startswith("2026-12-01T08:00:00")  # type: ignore[index]
    catalog.close()
