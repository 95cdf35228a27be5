"""Scale-out with real processes: 2 receivers, 2 Celery workers, a dispatcher, an API.

Every node is an ``ihgamp serve --role ...`` process on loopback, sharing one PostgreSQL
catalog, one RabbitMQ broker and one spool/outbox folder; results go to a real Orthanc.
The tests kill nodes with SIGKILL in the middle of their work and restart the broker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from gateway.catalog.schema import Delivery, Job, JobState, Lease, Study
from support.brokers import RabbitMq, rabbitmq, redis
from support.cluster import TIMERS, WORKER, Cluster, copies, reset_database
from support.gateway import (
    GatewayProcess,
    send,
    tiny_wsi,
    wait_for,
)
from support.orthanc import Orthanc, orthanc
from support.postgres import postgres_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def broker() -> Iterator[RabbitMq]:
    with rabbitmq() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, broker: RabbitMq
) -> Iterator[Cluster]:
    reset_database(postgres_url)
    tmp = tmp_path_factory.mktemp("cluster")
    with orthanc() as pacs:
        running = Cluster(tmp, postgres_url, broker.url, pacs)
        try:
            for name, role in (
                ("r1", "receiver"),
                ("r2", "receiver"),
                ("w1", "worker"),
                ("w2", "worker"),
                ("d1", "dispatcher"),
                ("a1", "api"),
            ):
                running.start(name, role)
            yield running
        finally:
            running.stop()


def _sr_count(pacs: Orthanc, study_uid: str) -> int:
    found = pacs.post(
        "/tools/find",
        {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid, "Modality": "SR"}},
    )
    return len(found)


def test_twenty_studies_from_four_senders_are_scored_and_delivered_exactly_once(
    cluster: Cluster, samples_root: Path
) -> None:
    studies = copies(cluster.tmp / "load", samples_root, 20, "s")
    r1, r2 = cluster.dicom_ports["r1"], cluster.dicom_ports["r2"]

    def sender(batch: list[int]) -> list[int]:
        statuses = []
        for index in batch:
            _, files = studies[index]
            if index % 5 == 0:  # split across both receivers
                statuses += send(r1, files[:1]) + send(r2, files[1:])
            else:
                statuses += send(r1 if index % 2 else r2, files)
        return statuses

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(sender, [list(range(i, 20, 4)) for i in range(4)]))
    assert all(status == 0 for statuses in results for status in statuses)
    uids = [uid for uid, _ in studies]
    wait_for(lambda: cluster.scored(*uids), timeout=400)
    assert cluster.pacs is not None
    pacs = cluster.pacs
    wait_for(lambda: all(_sr_count(pacs, uid) == 1 for uid in uids), timeout=120)
    jobs = cluster.query(
        select(Study.study_uid, func.count(Job.id), func.max(Job.state))
        .join(Job, Job.study_id == Study.id)
        .where(Study.study_uid.in_(uids))
        .group_by(Study.study_uid)
    )
    assert len(jobs) == 20 and all(n == 1 and state == JobState.DONE for _, n, state in jobs)
    deliveries = cluster.query(
        select(Delivery.attempts, Delivery.state)
        .join(Study, Study.id == Delivery.study_id)
        .where(Study.study_uid.in_(uids))
    )
    assert len(deliveries) == 20 and all(row == (1, "delivered") for row in deliveries)
    # Each worker process loaded the model once, however many studies it scored.
    for worker in ("w1", "w2"):
        assert (cluster.tmp / f"{worker}.log").read_text().count('"model loaded"') == 1
    # The API node serves the catalog all nodes write.
    listing = httpx.get(f"http://127.0.0.1:{cluster.http_ports['a1']}/health", timeout=10)
    assert listing.status_code == 200


def _running_job(cluster: Cluster, uid: str) -> str | None:
    rows = cluster.query(
        select(Job.lease_owner)
        .join(Study, Study.id == Job.study_id)
        .where(Study.study_uid == uid, Job.state == JobState.RUNNING)
    )
    return str(rows[0][0]) if rows and rows[0][0] else None


def test_a_worker_killed_mid_job_is_replaced_and_the_study_scored_once(
    cluster: Cluster, samples_root: Path
) -> None:
    ((uid, files),) = copies(cluster.tmp / "kill-worker", samples_root, 1, "k")
    assert send(cluster.dicom_ports["r1"], files) == [0] * len(files)
    owner = wait_for(lambda: _running_job(cluster, uid), timeout=120, interval=0.05)
    victim = owner.split(":", 1)[0]
    cluster.nodes[victim].kill()
    try:
        wait_for(lambda: cluster.scored(uid), timeout=120)
        ((attempts, state, count),) = cluster.query(
            select(func.max(Job.attempts), func.max(Job.state), func.count(Job.id))
            .join(Study, Study.id == Job.study_id)
            .where(Study.study_uid == uid)
        )
        assert (attempts, state, count) == (2, JobState.DONE, 1)
        assert cluster.pacs is not None
        pacs = cluster.pacs
        wait_for(lambda: _sr_count(pacs, uid) == 1, timeout=60)
        assert "lease expired; job taken over" in "".join(
            (cluster.tmp / f"{w}.log").read_text() for w in ("w1", "w2") if w != victim
        )
    finally:
        cluster.start(victim, "worker")


def _leader(cluster: Cluster) -> str | None:
    rows = cluster.query(select(Lease.owner).where(Lease.name == "completion"))
    return str(rows[0][0]).split(":", 1)[0] if rows else None


def test_the_completion_leader_killed_is_replaced_within_its_lease(
    cluster: Cluster, samples_root: Path
) -> None:
    leader = wait_for(lambda: _leader(cluster), timeout=30)
    other = "r2" if leader == "r1" else "r1"
    cluster.nodes[leader].kill()
    killed_at = time.monotonic()
    try:
        ((uid, files),) = copies(cluster.tmp / "kill-leader", samples_root, 1, "l")
        assert send(cluster.dicom_ports[other], files) == [0] * len(files)
        wait_for(lambda: _leader(cluster) == other, timeout=30)
        took = time.monotonic() - killed_at
        assert took < TIMERS["leader_lease_s"] + 5, took
        wait_for(lambda: cluster.scored(uid), timeout=180)
    finally:
        cluster.start(leader, "receiver")


def test_a_receiver_killed_mid_association_loses_no_acknowledged_instance(
    cluster: Cluster,
) -> None:
    study = generate_uid()
    acked = [tiny_wsi(cluster.tmp / "rk" / str(i), study) for i in range(5)]
    big = tiny_wsi(cluster.tmp / "rk-big", study, payload=300 * 2**20)
    port = cluster.dicom_ports["r2"]
    assert send(port, acked) == [0] * 5
    errors: list[BaseException] = []

    def send_big() -> None:
        try:
            send(port, [big])
        except BaseException as exc:  # the connection dies with the receiver
            errors.append(exc)

    sender = threading.Thread(target=send_big)
    sender.start()
    incoming = cluster.tmp / "spool" / ".incoming" / "r2"
    wait_for(
        lambda: any(p.stat().st_size > 10 * 2**20 for p in incoming.glob("*")),
        timeout=60,
        interval=0.02,
    )
    cluster.nodes["r2"].kill()
    sender.join(timeout=60)
    try:
        catalog = cluster.catalog()
        try:
            snapshot = catalog.study(study)
            assert snapshot is not None and snapshot.series
            assert sum(s.instance_count for s in snapshot.series) == 5
            for path in catalog.instance_paths(study):
                assert Path(path).is_file()
        finally:
            catalog.close()
    finally:
        cluster.start("r2", "receiver")
    assert not [p for p in incoming.iterdir() if p.is_file()]  # the partial file is gone


def test_jobs_queued_while_rabbitmq_restarts_are_not_lost(
    cluster: Cluster, broker: RabbitMq, samples_root: Path
) -> None:
    for name in ("w1", "w2"):
        cluster.nodes[name].stop()
    studies = copies(cluster.tmp / "broker", samples_root, 2, "b")
    for _, files in studies:
        assert send(cluster.dicom_ports["r1"], files) == [0] * len(files)
    uids = [uid for uid, _ in studies]

    def published() -> bool:
        rows = cluster.query(
            select(Job.published_at)
            .join(Study, Study.id == Job.study_id)
            .where(Study.study_uid.in_(uids))
        )
        return len(rows) == 2 and all(r[0] is not None for r in rows)

    wait_for(published, timeout=120)
    broker.restart()  # durable queue, persistent messages: they survive
    for name in ("w1", "w2"):
        cluster.start(name, "worker")
    wait_for(lambda: cluster.scored(*uids), timeout=240)


def test_messages_lost_with_a_redis_restart_are_republished_by_the_sweeper(
    tmp_path: Path, samples_root: Path
) -> None:
    # Its own database: the module's cluster is still running on the shared one.
    with postgres_server() as url, redis() as broker:
        running = Cluster(tmp_path, url, broker.url, None)
        worker = {**WORKER, "broker_url": broker.url, "lease_s": 3, "republish_after_s": 3}
        try:
            receiver = GatewayProcess(
                running.config("r1", worker=worker), tmp_path / "r1.log", role="receiver"
            ).start()
            running.nodes["r1"] = receiver
            receiver.wait_listening(running.dicom_ports["r1"])
            ((uid, files),) = copies(tmp_path / "redis", samples_root, 1, "x")
            assert send(running.dicom_ports["r1"], files) == [0] * len(files)
            wait_for(
                lambda: running.query(
                    select(Job.published_at).where(Job.published_at.is_not(None))
                ),
                timeout=60,
            )
            broker.restart()  # no persistence: the message is gone
            worker_node = GatewayProcess(
                running.config("w1", worker=worker), tmp_path / "w1.log", role="worker"
            ).start()
            running.nodes["w1"] = worker_node
            wait_for(lambda: running.scored(uid), timeout=240)
            assert "due jobs published" in (tmp_path / "r1.log").read_text()
        finally:
            running.stop()
