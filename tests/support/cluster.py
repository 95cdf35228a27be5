"""A cluster of ``ihgamp serve --role ...`` processes on loopback (tests and bench.scale_out).

Nodes share one PostgreSQL catalog, one broker and one spool/outbox folder; results go to
an Orthanc when one is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from gateway.catalog import Catalog, StudyState

from .gateway import GatewayProcess, free_port, settings_dict, write_toml
from .orthanc import Orthanc
from .studies import relabel

TIMERS = {"series_stable_s": 1, "study_stable_s": 3, "poll_interval_s": 0.3, "leader_lease_s": 4}
WORKER = {
    "backend": "celery",
    "count": 1,
    "lease_s": 6,
    "republish_after_s": 30,
    "sweep_interval_s": 1,
    "backoff_s": 1,
    "max_attempts": 3,
}


@dataclass
class Cluster:
    tmp: Path
    catalog_url: str
    broker_url: str
    pacs: Orthanc | None
    nodes: dict[str, GatewayProcess] = field(default_factory=dict)
    dicom_ports: dict[str, int] = field(default_factory=dict)
    http_ports: dict[str, int] = field(default_factory=dict)

    def config(self, name: str, **sections: dict[str, Any]) -> Path:
        port = self.dicom_ports.setdefault(name, free_port())
        http = self.http_ports.setdefault(name, free_port())
        dispatch: dict[str, Any] = {"poll_interval_s": 0.2, "backoff_s": 0.5}
        if self.pacs is not None:
            dispatch["dicom"] = [
                {
                    "name": "pacs",
                    "ae_title": self.pacs.aet,
                    "host": "127.0.0.1",
                    "port": self.pacs.dicom_port,
                }
            ]
        base: dict[str, Any] = {
            "dicom": {"port": port},
            "http": {"port": http},
            "catalog": {"url": self.catalog_url},
            "completion": TIMERS,
            "worker": {**WORKER, "broker_url": self.broker_url},
            "node": {"name": name},
            "dispatch": dispatch,
        }
        data = settings_dict(self.tmp, **{**base, **sections})
        return write_toml(self.tmp / f"{name}.toml", data)

    def start(self, name: str, role: str) -> GatewayProcess:
        node = GatewayProcess(self.config(name), self.tmp / f"{name}.log", role=role).start()
        self.nodes[name] = node
        if role == "receiver":
            node.wait_listening(self.dicom_ports[name])
        if role == "api":
            node.wait_listening(self.http_ports[name])
        return node

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()

    def catalog(self) -> Catalog:
        return Catalog(self.catalog_url)

    def scored(self, *uids: str) -> bool:
        catalog = self.catalog()
        try:
            return all(
                (s := catalog.study(u)) is not None and s.state == StudyState.SCORED for u in uids
            )
        finally:
            catalog.close()

    def query(self, statement: Any) -> list[Any]:
        catalog = self.catalog()
        try:
            with catalog.session() as s:
                return list(s.execute(statement).all())
        finally:
            catalog.close()


def reset_database(url: str) -> None:
    """Empty a PostgreSQL database (drop and recreate its public schema)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def copies(tmp: Path, samples_root: Path, count: int, tag: str) -> list[tuple[str, list[Path]]]:
    """``count`` copies of the smallest sample study under new UIDs."""
    source = samples_root / "dicom" / "DEMO-003"
    return [relabel(source, tmp / f"{tag}{i}") for i in range(count)]
