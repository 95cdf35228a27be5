"""A listener in the test process, and a small PKI for TLS tests (fixtures)."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.catalog import Catalog
from gateway.config import Settings
from gateway.receive import DicomListener
from gateway.receive.store import InstanceStore
from gateway.spool import Spool
from support.gateway import make_settings


@dataclass
class Listener:
    port: int
    catalog: Catalog
    spool: Spool
    settings: Settings
    server: DicomListener

    def handlers_store(self) -> InstanceStore:
        """The listener's :class:`InstanceStore` (recovery, identity backfill)."""
        return self.server.handlers.store


def start_listener(tmp_path: Path, **sections: dict[str, object]) -> Listener:
    settings = make_settings(tmp_path, **sections)
    catalog = Catalog(settings.catalog.url)
    spool = Spool(settings.storage.spool_dir, settings.storage.min_free_mb * 2**20)
    server = DicomListener(settings.dicom, catalog, spool)
    return Listener(server.start(), catalog, spool, settings, server)


@pytest.fixture()
def listener(tmp_path: Path) -> Iterator[Listener]:
    running = start_listener(tmp_path)
    yield running
    running.server.stop()
    running.catalog.close()


@pytest.fixture()
def listeners(tmp_path: Path) -> Iterator[Callable[..., Listener]]:
    """Start listeners with given settings sections; all are stopped at the end."""
    started: list[Listener] = []

    def start(**sections: dict[str, object]) -> Listener:
        folder = tmp_path / f"l{len(started)}"
        folder.mkdir()
        running = start_listener(folder, **sections)
        started.append(running)
        return running

    yield start
    for running in started:
        running.server.stop()
        running.catalog.close()


def tls_sections(pki: Path) -> dict[str, object]:
    """The ``dicom.tls`` settings of a TLS listener using the test PKI."""
    return {
        "enabled": True,
        "certificate": str(pki / "server.pem"),
        "private_key": str(pki / "server.key"),
        "ca_certificates": str(pki / "ca.pem"),
        "require_client_certificate": True,
    }


def tls_client(pki: Path, cert: str | None = "client") -> ssl.SSLContext:
    """A client TLS context trusting the test CA, with the named client certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.pem"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    return ctx


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Test CA",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    for name in ("server", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-copy_extensions",
            "copy",
            "-out",
            str(d / f"{name}.pem"),
        )
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=rogue",
        "-keyout",
        str(d / "rogue.key"),
        "-out",
        str(d / "rogue.pem"),
    )
    return d
