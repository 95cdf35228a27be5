"""The catalog on SQLite and PostgreSQL: instances, state machine, jobs."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from gateway.catalog import (
    Catalog,
    InstanceRecord,
    JobState,
    JobStore,
    StudyState,
    utcnow,
)
from gateway.catalog.access import AccessLog, SessionStore
from gateway.catalog.dimse_audit import DimseAudit
from gateway.catalog.pull_cursors import PullCursorStore
from gateway.catalog.schema import AccessAction
from gateway.errors import CatalogError, UidConflictError
from support.factories import instance_record

pytestmark = pytest.mark.integration

WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
SR = "1.2.840.10008.5.1.4.1.1.88.34"


def rec(
    study: str = "1.2.3",
    series: str = "1.2.3.4",
    sop: str = "1.2.3.4.5",
    sha: str = "a",
    sop_class: str = WSI,
    spacing: float | None = 0.5,
) -> InstanceRecord:
    return instance_record(
        study,
        series,
        sop,
        sha * 64,
        sop_class,
        spacing,
        accession_number="ACC1",
        image_flavor="VOLUME",
        path=f"/spool/{sop}",
    )


def test_instances_studies_series_and_versions(catalog: Catalog) -> None:
    assoc = DimseAudit(catalog).open_association("SCANNER", "IHGAMP", "127.0.0.1", 4000, False)
    first = catalog.record_instance(rec(sop="1.1", sha="a"), assoc)
    assert not first.duplicate and first.version == 1
    assert catalog.record_instance(rec(sop="1.1", sha="a"), assoc).duplicate
    catalog.record_instance(rec(sop="1.2", sha="b", spacing=2.0), assoc)
    changed = catalog.record_instance(rec(sop="1.1", sha="c"), assoc)
    assert changed.version == 2 and not changed.duplicate
    assert catalog.current_instance("1.1") == (2, "c" * 64, "/spool/1.1")
    study = catalog.study("1.2.3")
    assert study is not None and study.state == StudyState.RECEIVING
    assert study.accession_number == "ACC1"
    (series,) = study.series
    assert series.instance_count == 2  # a new version replaces, it does not add
    assert series.finest_volume_mpp == pytest.approx(0.5)
    files = catalog.series_files("1.2.3")
    assert {k: (v.sop_class_uid, v.paths) for k, v in files.items()} == {
        "1.2.3.4": (WSI, ["/spool/1.1", "/spool/1.2"])
    }
    (audit,) = DimseAudit(catalog).associations()
    assert audit["instances_received"] == 3 and audit["bytes_received"] == 30


def test_series_cannot_move_between_studies(catalog: Catalog) -> None:
    catalog.record_instance(rec(study="1.1", series="9.9", sop="1"), None)
    with pytest.raises(UidConflictError, match="another study"):
        catalog.record_instance(rec(study="1.2", series="9.9", sop="2"), None)


def test_state_machine_allows_only_listed_transitions(catalog: Catalog) -> None:
    catalog.record_instance(rec(), None)
    with pytest.raises(CatalogError, match="cannot go from receiving to scored"):
        catalog.transition("1.2.3", StudyState.SCORED)
    assert not catalog.transition("1.2.3", StudyState.QUEUED, expect=[StudyState.COMPLETE])
    assert catalog.transition("1.2.3", StudyState.COMPLETE, "stable")
    with pytest.raises(CatalogError, match="no study"):
        catalog.transition("9.9.9", StudyState.COMPLETE)


def test_new_slide_reopens_a_scored_study_but_an_sr_does_not(catalog: Catalog) -> None:
    catalog.record_instance(rec(), None)
    catalog.transition("1.2.3", StudyState.COMPLETE)
    jobs = JobStore(catalog)
    jobs.enqueue("1.2.3", 3)
    claimed = jobs.claim("w", 60)
    assert claimed is not None
    jobs.finish(claimed.job_id, "w")
    assert catalog.study("1.2.3").state == StudyState.SCORED  # type: ignore[union-attr]
    sr = catalog.record_instance(rec(series="5.5", sop="7.7", sop_class=SR, sha="d"), None)
    assert not sr.reopened
    assert catalog.study("1.2.3").state == StudyState.SCORED  # type: ignore[union-attr]
    slide = catalog.record_instance(rec(series="6.6", sop="8.8", sha="e"), None)
    assert slide.reopened
    assert catalog.study("1.2.3").state == StudyState.RECEIVING  # type: ignore[union-attr]


def test_a_new_volume_or_segmentation_reopens_a_finished_study_too(catalog: Catalog) -> None:
    """Inputs beyond slides: a CT series arriving after the study finished reopens it."""
    catalog.record_instance(rec(), None)
    catalog.transition("1.2.3", StudyState.COMPLETE)
    catalog.transition("1.2.3", StudyState.IGNORED, "no analysis applies")
    ct = catalog.record_instance(
        rec(series="7.7", sop="9.9", sop_class="1.2.840.10008.5.1.4.1.1.2", sha="f"), None
    )
    study = catalog.study("1.2.3")
    assert ct.reopened and study is not None and study.state == StudyState.RECEIVING
    assert study.state_reason == "reopened: new volume instance"


def _queued(catalog: Catalog, n: int = 1) -> JobStore:
    jobs = JobStore(catalog)
    for i in range(n):
        uid = f"1.2.{i}"
        catalog.record_instance(rec(study=uid, series=f"{uid}.1", sop=f"{uid}.1.1"), None)
        catalog.transition(uid, StudyState.COMPLETE)
        jobs.enqueue(uid, max_attempts=2)
    return jobs


def test_job_claim_finish(catalog: Catalog) -> None:
    jobs = _queued(catalog)
    assert jobs.enqueue("1.2.0", 2) == jobs.jobs()[0].job_id  # no duplicate job
    job = jobs.claim("w1", 60)
    assert job is not None and job.attempt == 1
    assert catalog.study("1.2.0").state == StudyState.SCORING  # type: ignore[union-attr]
    assert jobs.claim("w2", 60) is None
    assert jobs.renew(job.job_id, "w1", 60) and not jobs.renew(job.job_id, "w2", 60)
    assert not jobs.finish(job.job_id, "w2")
    assert jobs.finish(job.job_id, "w1")
    assert jobs.jobs()[0].state == JobState.DONE


def test_expired_lease_is_taken_over_and_counted(catalog: Catalog) -> None:
    jobs = _queued(catalog)
    job = jobs.claim("dead-worker", lease_s=60)
    assert job is not None
    later = utcnow() + dt.timedelta(seconds=61)
    again = jobs.claim("w2", 60, now=later)
    assert again is not None and again.job_id == job.job_id and again.attempt == 2
    assert not jobs.finish(job.job_id, "dead-worker")  # the dead worker lost its lease
    # A second expiry exceeds max_attempts=2: the job and the study fail with the reason.
    assert jobs.claim("w3", 60, now=later + dt.timedelta(seconds=61)) is None
    view = jobs.jobs()[0]
    assert view.state == JobState.FAILED and "lease expired" in (view.last_error or "")
    study = catalog.study("1.2.0")
    assert study is not None and study.state == StudyState.FAILED


def test_retry_with_backoff_then_failure(catalog: Catalog) -> None:
    jobs = _queued(catalog)
    job = jobs.claim("w", 60)
    assert job is not None
    assert jobs.fail(job.job_id, "w", "disk hiccup", backoff_s=30, backoff_max_s=300) == (
        "retry",
        30,
    )
    study = catalog.study("1.2.0")
    assert study is not None and study.state == StudyState.QUEUED
    assert "retry in 30 s" in (study.state_reason or "")
    assert jobs.claim("w", 60) is None  # not due yet
    job = jobs.claim("w", 60, now=utcnow() + dt.timedelta(seconds=31))
    assert job is not None and job.attempt == 2
    assert jobs.fail(job.job_id, "w", "still broken", 30, 300)[0] == "failed"
    study = catalog.study("1.2.0")
    assert study is not None and study.state == StudyState.FAILED
    assert study.state_reason == "still broken"


def test_concurrent_claims_never_share_a_job(catalog: Catalog) -> None:
    jobs = _queued(catalog, n=12)
    won: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := jobs.claim(name, 60)) is not None:
            with lock:
                won.append(job.job_id)
            jobs.finish(job.job_id, name)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for i in range(4):
            pool.submit(worker, f"w{i}")
    assert sorted(won) == sorted(j.job_id for j in jobs.jobs())
    assert len(won) == len(set(won)) == 12


def test_concurrent_first_pull_cursor_writes_do_not_collide(catalog: Catalog) -> None:
    # An operator's write and the poller's first pass may create the cursor at once.
    barrier = threading.Barrier(6)
    earlier = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def write(i: int) -> None:
        barrier.wait()
        if i % 2:
            PullCursorStore(catalog).set("pacs", success_at=earlier)
        else:
            PullCursorStore(catalog).set("pacs", error="unreachable")

    with ThreadPoolExecutor(max_workers=6) as pool:
        for future in [pool.submit(write, i) for i in range(6)]:
            future.result()  # no IntegrityError
    cursor = PullCursorStore(catalog).get("pacs")
    assert cursor is not None and cursor[0] == earlier


def test_enqueue_refuses_a_study_still_receiving(catalog: Catalog) -> None:
    catalog.record_instance(rec(), None)
    with pytest.raises(CatalogError, match="still receiving"):
        JobStore(catalog).enqueue("1.2.3", 3)


def test_naive_timestamps_are_refused(catalog: Catalog) -> None:
    with pytest.raises(Exception, match="timezone-aware"):
        catalog.record_instance(rec(), None, now=dt.datetime(2026, 1, 1))  # noqa: DTZ001


def test_access_log_and_sessions(catalog: Catalog) -> None:
    log = AccessLog(catalog)
    ids = [f"Observation/{i}" for i in range(150)]
    log.record("ehr", "10.0.0.1", "GET", "/fhir/Observation", AccessAction.SEARCH, 200, "Obs", ids)
    log.record("ops", "10.0.0.2", "POST", "/studies/{uid}/requeue", AccessAction.REQUEUE, 303)
    newest, oldest = log.entries()
    assert newest.token_name == "ops" and newest.action == AccessAction.REQUEUE
    assert oldest.result_count == 150 and len(oldest.resources) == 100
    assert [e.token_name for e in log.entries(token_name="ehr")] == ["ehr"]
    sessions = SessionStore(catalog)
    cookie, view = sessions.create("ops", "10.0.0.2", 3600)
    assert sessions.get(cookie) == view
    with catalog.engine.connect() as conn:
        stored = conn.execute(text("SELECT id_hash FROM http_sessions")).scalars().all()
    assert cookie not in stored  # only its hash is kept
    assert sessions.get(cookie, now=view.expires_at) is None
    assert [v.token_name for v in sessions.live()] == ["ops"]
    assert sessions.revoke(cookie) and not sessions.revoke(cookie)
    assert sessions.get(cookie) is None and sessions.live() == []
