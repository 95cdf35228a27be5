"""A running job through PostgreSQL outages: the heartbeat and the outcome record survive.

A real PostgreSQL is stopped (``-m immediate``: connections drop, as in a crash) while a
worker holds a job, once while the job runs (the heartbeat's renewals fail) and once as it
finishes (recording the outcome fails). Each time the server comes back, the worker goes
on: no thread dies with a traceback, each failed try is one log line, and the job is run
once and recorded done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from gateway.catalog import Catalog, ClaimedJob, JobState, JobStore, StudyState
from gateway.config import WorkerSettings
from gateway.queue import InProcessQueue, JobRunner
from support.factories import instance_record
from support.postgres import postgres_instance

pytestmark = pytest.mark.integration

STUDY = "1.2.3"


def _until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


def test_a_running_job_survives_postgresql_going_away_twice(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    died: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.thread.name))
    caplog.set_level(logging.INFO, logger="gateway.queue.runner")
    with postgres_instance() as server:
        catalog = Catalog(server.url)
        catalog.record_instance(
            instance_record(STUDY, f"{STUDY}.1", f"{STUDY}.1.1"),
            None,
        )
        catalog.transition(STUDY, StudyState.COMPLETE)
        jobs = JobStore(catalog)
        jobs.enqueue(STUDY, 3)
        started, release = threading.Event(), threading.Event()
        runs: list[int] = []

        def processor(job: ClaimedJob) -> None:
            runs.append(job.attempt)
            started.set()
            assert release.wait(60)

        settings = WorkerSettings(count=1, lease_s=3.0, poll_interval_s=0.1)
        queue = InProcessQueue(jobs, JobRunner(jobs, processor, settings), settings)
        queue.start()
        try:
            assert started.wait(20)
            # 1. The database goes away while the job runs: renewals fail, then resume.
            server.stop()
            _until(lambda: len(_messages(caplog, "lease renewal failed")) >= 2, timeout=20)
            server.start()
            _until(lambda: bool(_messages(caplog, "lease renewed after an outage")), timeout=20)
            # 2. It goes away as the job finishes: the outcome is recorded once it is back.
            server.stop()
            release.set()
            _until(lambda: bool(_messages(caplog, "job completion record failed")), timeout=20)
            server.start()
            _until(lambda: catalog.study(STUDY).state == StudyState.SCORED, timeout=30)  # type: ignore[union-attr]
        finally:
            release.set()
            queue.stop()
        (view,) = jobs.jobs(study_uid=STUDY)
        catalog.close()
    assert view.state == JobState.DONE
    assert runs == [1]  # run once: the lease stayed this worker's through both outages
    assert died == []  # no thread ended with an unhandled exception
    failed = _messages(caplog, "failed; trying again")
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in failed)
    assert {r.error for r in failed} <= {"OperationalError", "CatalogUnavailableError"}  # type: ignore[attr-defined]
