"""The in-process queue: leases, heartbeats, retries with backoff, permanent failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.catalog import Catalog, ClaimedJob, JobState, JobStore, StudyState
from gateway.config import WorkerSettings
from gateway.queue import InProcessQueue, JobRunner, PermanentJobError
from support.factories import instance_record

pytestmark = pytest.mark.unit


def _catalog(tmp_path: Path, studies: int = 1) -> Catalog:
    catalog = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    for i in range(studies):
        uid = f"1.{i}"
        catalog.record_instance(
            instance_record(uid, f"{uid}.1", f"{uid}.1.1"),
            None,
        )
        catalog.transition(uid, StudyState.COMPLETE)
    return catalog


def _settings(**kw: float) -> WorkerSettings:
    base = {
        "count": 1,
        "lease_s": 1.0,
        "max_attempts": 3,
        "backoff_s": 0.2,
        "backoff_max_s": 1.0,
        "poll_interval_s": 0.05,
    }
    return WorkerSettings(**{**base, **kw})  # type: ignore[arg-type]


def _queue(
    jobs: JobStore, processor: Callable[[ClaimedJob], None], settings: WorkerSettings
) -> InProcessQueue:
    return InProcessQueue(jobs, JobRunner(jobs, processor, settings), settings)


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError


def _state(catalog: Catalog, uid: str) -> str:
    study = catalog.study(uid)
    assert study is not None
    return study.state


def test_transient_failure_is_retried_with_backoff(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    calls: list[float] = []

    def flaky(job: ClaimedJob) -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise OSError("disk busy")

    queue = _queue(JobStore(catalog), flaky, _settings())
    queue.submit("1.0", "complete")
    queue.start()
    try:
        _until(lambda: _state(catalog, "1.0") == StudyState.SCORED)
    finally:
        queue.stop()
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.2 and calls[2] - calls[1] >= 0.4  # exponential
    assert JobStore(catalog).jobs()[0].attempts == 3


def test_permanent_failure_is_not_retried_and_shows_the_reason(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path)
    calls = []

    def corrupt(job: ClaimedJob) -> None:
        calls.append(job)
        raise PermanentJobError("slide 1.0.1 is truncated")

    queue = _queue(JobStore(catalog), corrupt, _settings())
    queue.submit("1.0", "complete")
    assert queue.run_once()
    assert len(calls) == 1
    study = catalog.study("1.0")
    assert study is not None and study.state == StudyState.FAILED
    assert study.state_reason == "slide 1.0.1 is truncated"
    assert JobStore(catalog).jobs()[0].state == JobState.FAILED


def test_heartbeat_keeps_a_long_job_and_a_dead_worker_is_taken_over(tmp_path: Path) -> None:
    catalog = _catalog(tmp_path, studies=2)
    jobs = JobStore(catalog)
    jobs.enqueue("1.0", 3)
    dead = jobs.claim("dead", lease_s=1.0)  # claims 1.0, then dies: never renews
    assert dead is not None
    jobs.enqueue("1.1", 3)
    release = threading.Event()
    seen: list[tuple[str, int]] = []

    def slow(job: ClaimedJob) -> None:
        seen.append((job.study_uid, job.attempt))
        if job.study_uid == "1.1":
            release.wait(3.0)  # longer than the lease: only heartbeats keep it ours

    queue = _queue(jobs, slow, _settings(lease_s=1.0))
    queue.start()
    try:
        _until(
            lambda: {_state(catalog, u) for u in ("1.0", "1.1")} == {StudyState.SCORED}, timeout=15
        )
    finally:
        release.set()
        queue.stop()
    assert ("1.0", 2) in seen  # taken over after the dead worker's lease expired
    assert seen.count(("1.1", 1)) == 1 and len(seen) == 2  # never run twice
