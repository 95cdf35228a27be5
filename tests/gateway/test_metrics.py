"""Every Prometheus counter moves when its event happens (a real gateway on loopback).

Counters are per process and cumulative, so the test compares each one before and after
the events it causes: instances stored and refused, associations and their refusals by
reason, scoring, dispatch attempts; and reads the catalog gauges.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydicom.uid import generate_uid

from gateway.catalog import StudyState
from gateway.service import Gateway
from ihgamp_core.hrd.engine import Engine
from ihgamp_core.synthetic.samples import SampleCase
from support.gateway import free_port, make_settings, send, tiny_wsi, wait_for
from support.wire import associate_rq, closed_by_peer, connect

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(
    scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def test_each_counter_moves_with_its_event(
    tmp_path: Path, engine: Engine, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    closed_port = free_port()  # a destination nobody listens on: the attempt fails
    settings = make_settings(
        tmp_path,
        http={"port": 0},
        dicom={"max_unassociated_per_host": 1},
        dispatch={
            "dicom": [
                {"name": "down", "ae_title": "NOBODY", "host": "127.0.0.1", "port": closed_port}
            ],
            "backoff_s": 60,
            "timeout_s": 2,
        },
    )
    gateway = Gateway(settings, engine=engine)
    port = gateway.start()
    assert gateway.http is not None
    http = gateway.http.port
    try:
        before = _scrape(http)
        # Before any event, the series alerts compare with exist (at 0 in a fresh process).
        for name, labels in (
            ("ihgamp_jobs_total", {"outcome": "failed", "analysis": "hrd"}),
            ("ihgamp_dispatch_attempts_total", {"destination": "down", "outcome": "dead-letter"}),
            ("ihgamp_study_conflicts_total", {"rule": "patient"}),
            ("ihgamp_instances_refused_total", {"status": "0xA700"}),
            ("ihgamp_association_refusals_total", {"reason": "calling-ae"}),
            ("ihgamp_pulls_total", {"outcome": "failed"}),
        ):
            assert (name, tuple(sorted(labels.items()))) in before, (name, labels)
        good = tiny_wsi(tmp_path / "good", generate_uid())
        bad = tiny_wsi(tmp_path / "bad", generate_uid())
        data = bad.read_bytes()
        bad.write_bytes(data[:-100])  # truncated pixel data: 0xA900
        assert send(port, [good, bad]) == [0, 0xA900]
        with pytest.raises(ConnectionError):
            send(port, [good], calling_ae="INTRUDER")
        held = connect(port, "127.0.0.2")
        refused = connect(port, "127.0.0.2")  # over the per-host quota of 1
        assert closed_by_peer(refused, within=2)
        held.sendall(associate_rq())
        held.close()
        files = sorted((samples_root / "dicom" / "DEMO-003").rglob("*.dcm"))
        assert send(port, files) == [0] * len(files)
        uid = sample_cases["DEMO-003"].identity["study_instance_uid"]
        wait_for(
            lambda: (s := gateway.catalog.study(uid)) is not None and s.state == StudyState.SCORED,
            timeout=180,
        )

        def attempted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            now = _scrape(http)
            name = "ihgamp_dispatch_attempts_total"
            moved = _value(now, name, destination="down", outcome="retry") > _value(
                before, name, destination="down", outcome="retry"
            )
            return now if moved else {}

        after = wait_for(attempted, timeout=60)
    finally:
        gateway.stop()

    def moved(name: str, by: float = 1, **labels: str) -> bool:
        return _value(after, name, **labels) - _value(before, name, **labels) >= by

    assert moved("ihgamp_instances_received_total", by=1 + len(files))
    assert moved("ihgamp_instances_refused_total", status="0xA900")
    assert moved("ihgamp_associations_total", by=2)
    assert moved("ihgamp_association_refusals_total", reason="calling-ae")
    assert moved("ihgamp_association_refusals_total", reason="unassociated-quota")
    assert moved("ihgamp_jobs_total", outcome="done", analysis="hrd")
    assert moved("ihgamp_scoring_seconds_count", analysis="hrd")
    assert moved("ihgamp_job_queue_seconds_count", analysis="hrd")
    assert _value(after, "ihgamp_jobs_by_state", state="done", analysis="hrd") >= 1
    assert _value(after, "ihgamp_studies", state="scored") >= 1
    assert _value(after, "ihgamp_deliveries", destination="down", state="pending") >= 1
    assert _value(after, "ihgamp_spool_free_bytes") > 0
    assert ("ihgamp_queue_depth", ()) in after and ("ihgamp_dead_letter_deliveries", ()) in after
