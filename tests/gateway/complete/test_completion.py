"""Completion rules and their persistence across restarts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.catalog import Catalog, InstanceRecord, JobStore, StudyState
from gateway.complete import CompletionMonitor, decide
from gateway.config import CompletionSettings
from gateway.lifecycle import StudyLifecycle
from support.factories import instance_record

WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"
SR = "1.2.840.10008.5.1.4.1.1.88.34"
T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
RULES = CompletionSettings(series_stable_s=10, study_stable_s=30, force_after_s=600)


def rec(
    series: str, sop: str, sop_class: str = WSI, spacing: float | None = 0.25, study: str = "1.9"
) -> InstanceRecord:
    return instance_record(study, series, sop, sop_class=sop_class, spacing=spacing)


class Queue:
    def __init__(self, catalog: Catalog) -> None:
        self.jobs = JobStore(catalog)
        self.submitted: list[str] = []

    def submit(self, study_uid: str, reason: str) -> None:
        self.submitted.append(study_uid)
        self.jobs.enqueue(study_uid, 3, reason)


@pytest.fixture()
def cat(tmp_path: Path) -> Catalog:
    return Catalog(f"sqlite:///{tmp_path / 'c.db'}")


pytestmark = pytest.mark.unit


def _monitor(cat: Catalog, rules: CompletionSettings = RULES) -> tuple[CompletionMonitor, Queue]:
    queue = Queue(cat)
    return CompletionMonitor(cat, StudyLifecycle(cat, queue, max_mpp=0.55), rules), queue


def test_waits_while_instances_keep_arriving(cat: Catalog) -> None:
    monitor, queue = _monitor(cat)
    cat.record_instance(rec("1.9.1", "1"), None, now=T0)
    cat.record_instance(rec("1.9.1", "2"), None, now=T0 + dt.timedelta(seconds=25))
    assert monitor.tick(T0 + dt.timedelta(seconds=40)) == []  # study quiet only 15 s
    changed = monitor.tick(T0 + dt.timedelta(seconds=56))
    assert [uid for uid, _ in changed] == ["1.9"] and queue.submitted == ["1.9"]
    study = cat.study("1.9")
    assert study is not None and study.state == StudyState.QUEUED and not study.forced


def test_expected_series_completes_without_waiting_for_the_study_timer(cat: Catalog) -> None:
    rules = CompletionSettings(
        series_stable_s=10, study_stable_s=300, force_after_s=600, expected_series=2
    )
    monitor, queue = _monitor(cat, rules)
    cat.record_instance(rec("1.9.1", "1"), None, now=T0)
    assert monitor.tick(T0 + dt.timedelta(seconds=20)) == []  # one of two series
    cat.record_instance(rec("1.9.2", "2"), None, now=T0 + dt.timedelta(seconds=20))
    assert monitor.tick(T0 + dt.timedelta(seconds=25)) == []  # second series not yet stable
    (change,) = monitor.tick(T0 + dt.timedelta(seconds=31))
    assert "2 expected slide series" in change[1].reason and queue.submitted == ["1.9"]


def test_forced_after_timeout_even_while_receiving(cat: Catalog) -> None:
    monitor, queue = _monitor(cat)
    for i in range(0, 620, 20):  # a slow trickle that never goes quiet
        cat.record_instance(rec("1.9.1", str(i + 1)), None, now=T0 + dt.timedelta(seconds=i))
    (change,) = monitor.tick(T0 + dt.timedelta(seconds=621))
    assert change[1].forced
    study = cat.study("1.9")
    assert study is not None and study.forced and study.state == StudyState.QUEUED


def test_study_without_slides_is_ignored_and_without_20x_fails(cat: Catalog) -> None:
    monitor, queue = _monitor(cat)
    cat.record_instance(rec("7.1", "1", sop_class=SR, study="7"), None, now=T0)
    cat.record_instance(rec("8.1", "2", spacing=2.0, study="8"), None, now=T0)
    monitor.tick(T0 + dt.timedelta(seconds=100))
    seven, eight = cat.study("7"), cat.study("8")
    assert seven is not None and seven.state == StudyState.IGNORED
    assert eight is not None and eight.state == StudyState.FAILED
    assert "0.55 um/px" in (eight.state_reason or "")
    assert queue.submitted == []


def test_timers_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    first = Catalog(url)
    first.record_instance(rec("1.9.1", "1"), None, now=T0)
    first.close()  # the gateway stops half-way through receiving
    second = Catalog(url)
    monitor, queue = _monitor(second)
    assert monitor.tick(T0 + dt.timedelta(seconds=5)) == []
    monitor.tick(T0 + dt.timedelta(seconds=31))
    assert queue.submitted == ["1.9"]


def test_operator_can_force_a_receiving_study_only(cat: Catalog) -> None:
    monitor, queue = _monitor(cat)
    cat.record_instance(rec("1.9.1", "1"), None)
    monitor.lifecycle.force("1.9")
    assert queue.submitted == ["1.9"]
    study = cat.study("1.9")
    assert study is not None and study.forced and study.state == StudyState.QUEUED
    with pytest.raises(Exception, match="not receiving"):
        monitor.lifecycle.force("1.9")


def test_decide_is_pure() -> None:
    from gateway.catalog import SeriesSnapshot, StudySnapshot

    series = SeriesSnapshot("1.1", WSI, 3, 0.25, T0)
    study = StudySnapshot("1", None, "receiving", None, False, T0, T0, None, None, (series,))
    assert decide(study, RULES, 0.55, T0 + dt.timedelta(seconds=29)).action == "wait"
    assert decide(study, RULES, 0.55, T0 + dt.timedelta(seconds=30)).action == "complete"
    assert decide(study, RULES, 0.55, T0 + dt.timedelta(seconds=600)).forced


def test_downtime_does_not_count_as_quiet_time(cat: Catalog) -> None:
    rules = CompletionSettings(series_stable_s=10, study_stable_s=30, force_after_s=86400)
    monitor, queue = _monitor(cat, rules)
    cat.record_instance(rec("1.9.1", "1"), None, now=T0)
    # The gateway was down for an hour and came back at T0 + 3600 s.
    monitor.since = T0 + dt.timedelta(seconds=3600)
    assert monitor.tick(T0 + dt.timedelta(seconds=3605)) == []  # not on the first series
    cat.record_instance(rec("1.9.2", "2"), None, now=T0 + dt.timedelta(seconds=3610))
    assert monitor.tick(T0 + dt.timedelta(seconds=3635)) == []
    changed = monitor.tick(T0 + dt.timedelta(seconds=3641))  # 30 s quiet after the last one
    assert [uid for uid, _ in changed] == ["1.9"] and queue.submitted == ["1.9"]
    study = cat.study("1.9")
    assert study is not None and len(study.series) == 2


def test_forced_completion_waits_one_stable_period_after_a_restart(cat: Catalog) -> None:
    monitor, _ = _monitor(cat)
    cat.record_instance(rec("1.9.1", "1"), None, now=T0)
    restart = T0 + dt.timedelta(seconds=7200)  # past force_after_s while down
    monitor.since = restart
    assert monitor.tick(restart + dt.timedelta(seconds=5)) == []
    (decision,) = [d for _, d in monitor.tick(restart + dt.timedelta(seconds=31))]
    assert decision.action == "complete"
    assert decide(cat.study("1.9"), RULES, 0.55, restart, restart).action == "wait"  # type: ignore[arg-type]
