"""Scale-out figures of the multi-process topology on loopback, measured in one run.

Starts PostgreSQL, RabbitMQ and ``ihgamp serve --role ...`` processes sharing one catalog,
broker and spool, and measures:

* **receive throughput**: small instances per second from 4 concurrent senders into 1
  receiver, then split across 2 receivers;
* **studies per hour** with 1 worker, then 2 workers (copies of the smallest sample
  study, tile cap as given), from the first study queued to the last scored;
* **queue latency**: queued -> a worker starts it (the workers' own
  ``ihgamp_job_queue_seconds`` histogram, read from their metrics ports);
* **redelivery time**: a worker killed (SIGKILL) while scoring -> another worker starts
  the job (lease expiry + sweeper).

Prints JSON with every figure, the number of CPU cores, the tile cap and the command.
On a 2-core machine scoring cannot scale (both workers share the cores); the receive and
queue figures can.

    python -m bench.scale_out --instances 400 --studies 8 --max-tiles 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _receive_rate(cluster: Any, receivers: list[str], instances: int, workdir: Path) -> float:
    from pydicom.uid import generate_uid

    from support.gateway import send, tiny_wsi

    study = generate_uid()
    files = [tiny_wsi(workdir / f"i{i}", study) for i in range(instances)]
    batches = [files[i::4] for i in range(4)]
    ports = [cluster.dicom_ports[r] for r in receivers]
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda ib: send(ports[ib[0] % len(ports)], ib[1]), enumerate(batches))
        )
    seconds = time.perf_counter() - started
    assert all(s == 0 for r in results for s in r), "refused instances"
    return instances / seconds


def _histogram(port: int, name: str) -> tuple[float, float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{name}_sum":
                total += sample.value
            if sample.name == f"{name}_count":
                count += sample.value
    return total, count


def _scoring_rate(cluster: Any, samples: Path, count: int, tag: str, workdir: Path) -> float:
    from support.cluster import copies
    from support.gateway import send, wait_for

    made = copies(workdir / tag, samples, count, tag)
    started = time.perf_counter()
    for _, files in made:
        assert send(cluster.dicom_ports["r1"], files) == [0] * len(files)
    wait_for(lambda: cluster.scored(*[u for u, _ in made]), timeout=3600, interval=0.2)
    return count / (time.perf_counter() - started) * 3600


def measure(
    workdir: Path, instances: int, studies: int, max_tiles: int, samples: Path
) -> dict[str, Any]:
    """Run every measurement; return the figures."""
    from sqlalchemy import select

    from gateway.catalog.schema import Job, JobState, Study
    from support.brokers import rabbitmq
    from support.cluster import WORKER, Cluster, copies
    from support.gateway import GatewayProcess, free_port, send, wait_for
    from support.postgres import postgres_server

    figures: dict[str, Any] = {
        "cpu_cores": os.cpu_count(),
        "max_tiles": max_tiles,
        "command": " ".join(["python -m bench.scale_out", *sys.argv[1:]]),
    }
    with postgres_server() as url, rabbitmq() as broker:
        cluster = Cluster(workdir, url, broker.url, None)
        model = {"max_tiles": max_tiles}
        metrics_ports = {}

        def start(name: str, role: str) -> None:
            metrics_ports[name] = free_port()
            node_section = {"name": name, "metrics_port": metrics_ports[name]}
            config = cluster.config(name, model=model, node=node_section)

            node = GatewayProcess(config, workdir / f"{name}.log", role=role).start()
            cluster.nodes[name] = node
            if role == "receiver":
                node.wait_listening(cluster.dicom_ports[name])

        try:
            start("r1", "receiver")
            figures["receive_instances_per_s_1_receiver"] = round(
                _receive_rate(cluster, ["r1"], instances, workdir / "rx1"), 1
            )
            start("r2", "receiver")
            figures["receive_instances_per_s_2_receivers"] = round(
                _receive_rate(cluster, ["r1", "r2"], instances, workdir / "rx2"), 1
            )
            start("w1", "worker")
            figures["studies_per_hour_1_worker"] = round(
                _scoring_rate(cluster, samples, studies, "one", workdir), 1
            )
            start("w2", "worker")
            figures["studies_per_hour_2_workers"] = round(
                _scoring_rate(cluster, samples, studies, "two", workdir), 1
            )
            total = count = 0.0
            for name in ("w1", "w2"):
                s, c = _histogram(metrics_ports[name], "ihgamp_job_queue_seconds")
                total, count = total + s, count + c
            figures["queue_latency_mean_s"] = round(total / count, 3) if count else None
            # Redelivery: kill the worker running a job; time until another starts it.
            ((uid, files),) = copies(workdir / "kill", samples, 1, "kill")
            assert send(cluster.dicom_ports["r1"], files) == [0] * len(files)

            def running() -> tuple[str, int] | None:
                rows = cluster.query(
                    select(Job.lease_owner, Job.attempts)
                    .join(Study, Study.id == Job.study_id)
                    .where(Study.study_uid == uid, Job.state == JobState.RUNNING)
                )
                return (str(rows[0][0]), int(rows[0][1])) if rows and rows[0][0] else None

            owner, attempt = wait_for(running, timeout=600, interval=0.02)
            cluster.nodes[owner.split(":", 1)[0]].kill()
            killed = time.perf_counter()
            wait_for(lambda: (r := running()) is not None and r[1] > attempt, 600, 0.05)
            figures["redelivery_after_kill_s"] = round(time.perf_counter() - killed, 2)
            figures["worker_lease_s"] = WORKER["lease_s"]
        finally:
            cluster.stop()
    return figures


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--max-tiles", type=int, default=2)
    parser.add_argument("--samples", type=Path, default=REPO / "sample_data" / "generated")
    args = parser.parse_args()
    from ihgamp_core.synthetic.samples import build_samples

    build_samples(args.samples)
    with tempfile.TemporaryDirectory(prefix="ihgamp-scale-") as tmp:
        figures = measure(Path(tmp), args.instances, args.studies, args.max_tiles, args.samples)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
