"""Idle and half-open HTTP connections cannot starve the DICOM listener.

A real ``ihgamp serve`` on loopback, started with a low open-files limit, holds 1,000
idle HTTP connections while a pynetdicom C-ECHO and C-STORE still succeed; the HTTP
service closes connections beyond its budget and those that never send a request.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.catalog import Catalog
from gateway.config import Settings
from gateway.outbox import Outbox
from gateway.resources import descriptor_reserve, http_connection_budget
from gateway.web import HttpLimits, create_app
from support.gateway import (
    GatewayProcess,
    free_port,
    make_settings,
    settings_dict,
    tiny_wsi,
    wait_for,
    write_toml,
)

from .conftest import OPERATOR, running

pytestmark = [pytest.mark.integration]

IDLE = 1000
NOFILE = 512
MAX_HTTP = 64


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset by the peer
        return True


@contextmanager
def _idle_connections(
    port: int, count: int, sources: tuple[str, ...] = ("127.0.0.1",)
) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for index in range(count):
            source = (sources[index % len(sources)], 0)
            sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=source)
            sock.setblocking(False)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _dcmtk(*args: str) -> int:
    """Run a DCMTK client as SCANNER in its own process; return its exit status (0: success).

    Not pynetdicom in this process: with the 1,000 idle sockets held here its descriptors
    pass 1024, beyond what pynetdicom's select() can watch, and the client aborts itself.
    """
    from gateway.dcmtk import dcmtk_tool  # DCMTK's, not pynetdicom's same-named scripts

    tool, *rest = args
    cmd = [dcmtk_tool(tool), "-to", "10", "-aet", "SCANNER", "-aec", "IHGAMP", *rest]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{tool} failed against the gateway: {done.stderr[-500:]}"
    return done.returncode


@pytest.mark.slow
def test_idle_http_connections_leave_the_dicom_listener_working(tmp_path: Path) -> None:
    dicom_port, http_port = free_port(), free_port()
    data = settings_dict(
        tmp_path,
        # The 1,000 connections keep the process busy: DICOM's pre-association deadline is
        # not what this test is about (tests/gateway/receive/test_admission.py is).
        dicom={"port": dicom_port, "association_request_timeout_s": 60},
        worker={"count": 0},
        http={
            "port": http_port,
            "token": OPERATOR,
            "max_connections": MAX_HTTP,
            "max_connections_per_client": MAX_HTTP,  # the total cap is tested here
            "header_timeout_s": 120,
        },
    )
    config = write_toml(tmp_path / "gateway.toml", data)
    log = tmp_path / "gateway.log"
    # The soft limit starts low; `ihgamp serve` raises it to the hard limit.
    gateway = GatewayProcess(config, log, nofile=(128, NOFILE)).start()
    try:
        gateway.wait_listening(dicom_port)
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{http_port}/health").status_code == 200)
        assert gateway.proc is not None
        limits = Path(f"/proc/{gateway.proc.pid}/limits").read_text()
        assert f"Max open files            {NOFILE}                  {NOFILE}" in limits

        with _idle_connections(http_port, IDLE) as socks:
            # The excess is closed by the gateway, the budget is kept open.
            def settled() -> bool:
                return sum(_closed_by_peer(s) for s in socks) >= IDLE - MAX_HTTP

            wait_for(settled, timeout=60)
            still_open = sum(not _closed_by_peer(s) for s in socks)
            assert 0 < still_open <= MAX_HTTP
            fds = len(list(Path(f"/proc/{gateway.proc.pid}/fd").iterdir()))
            assert fds < NOFILE - 100, fds
            # DICOM works while HTTP is saturated.
            assert _dcmtk("echoscu", "127.0.0.1", str(dicom_port)) == 0
            study = "1.2.826.0.1.3680043.10.1234.77"
            slide = tiny_wsi(tmp_path / "in", study)
            assert _dcmtk("storescu", "-xy", "-R", "127.0.0.1", str(dicom_port), str(slide)) == 0
            catalog = Catalog(data["catalog"]["url"])
            try:
                assert catalog.study(study) is not None
            finally:
                catalog.close()
        # Once the idle connections are gone, HTTP answers again.
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{http_port}/health").status_code == 200)
    finally:
        assert gateway.stop() == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    messages = {r["message"] for r in lines}
    assert any(m.startswith("HTTP connection limit") for m in messages)
    assert not [r for r in lines if "Too many open files" in json.dumps(r)]
    assert {r["logger"] for r in lines} >= {"uvicorn.error", "uvicorn.access"}


@pytest.fixture()
def quick_server(tmp_path: Path) -> Iterator[int]:
    settings = make_settings(tmp_path, http={"token": OPERATOR})
    catalog = Catalog(settings.catalog.url)
    app = create_app(catalog, Outbox(tmp_path / "o"), settings)
    limits = HttpLimits(max_connections=8, header_timeout_s=1.0, keep_alive_s=1)
    try:
        with running(app, limits=limits) as url:
            yield int(url.rsplit(":", 1)[1])
    finally:
        catalog.close()


def test_connections_that_send_no_request_are_closed(quick_server: int) -> None:
    with _idle_connections(quick_server, 2) as (silent, slow):
        slow.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        started = time.monotonic()
        wait_for(lambda: _closed_by_peer(silent) and _closed_by_peer(slow), timeout=10)
        assert time.monotonic() - started < 5


def test_a_trickled_request_head_is_cut_off(quick_server: int) -> None:
    with _idle_connections(quick_server, 1) as (sock,):
        head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: y\r\n" * 20
        started = time.monotonic()
        try:
            for byte in head:  # a byte every 0.1 s: the whole head would take 24 s
                sock.send(bytes([byte]))
                time.sleep(0.1)
                if time.monotonic() - started > 10:
                    break
        except OSError:
            pass  # closed by the gateway
        assert _closed_by_peer(sock) and time.monotonic() - started < 10


def test_requests_and_kept_alive_connections_still_work(quick_server: int) -> None:
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(f"http://127.0.0.1:{quick_server}/health").status_code == 200
    with _idle_connections(quick_server, 20) as socks:
        wait_for(lambda: sum(_closed_by_peer(s) for s in socks) >= 12, timeout=10)


def test_the_http_budget_fits_the_descriptor_limit(tmp_path: Path) -> None:
    settings: Settings = make_settings(tmp_path, http={"max_connections": 1000})
    reserve = descriptor_reserve(settings)
    assert reserve > settings.dicom.max_associations
    assert http_connection_budget(settings, 1_000_000, 50) == 1000
    assert http_connection_budget(settings, reserve + 50 + 600, 50) == 300
    assert http_connection_budget(settings, 100, 50) >= 1  # never zero


def test_half_open_connections_of_a_few_addresses_leave_the_api_to_the_others(
    tmp_path: Path,
) -> None:
    """The red-team run: 1,100 half-open connections from 5 addresses took the API and
    the status page down. One address now holds at most its share."""
    settings = make_settings(tmp_path, http={"token": OPERATOR})
    catalog = Catalog(settings.catalog.url)
    app = create_app(catalog, Outbox(tmp_path / "o"), settings)
    limits = HttpLimits(max_connections=256, header_timeout_s=60, per_client=32)
    sources = tuple(f"127.0.0.{n}" for n in range(20, 25))
    try:
        with (
            running(app, limits=limits) as url,
            _idle_connections(int(url.rsplit(":", 1)[1]), 1100, sources) as socks,
        ):
            wait_for(lambda: sum(_closed_by_peer(s) for s in socks) >= 1100 - 5 * 32, 30)
            assert sum(not _closed_by_peer(s) for s in socks) <= 5 * 32
            headers = {"Authorization": f"Bearer {OPERATOR}"}
            for _ in range(3):  # another client is served at once
                assert (
                    httpx.get(f"{url}/api/studies", headers=headers, timeout=5).status_code == 200
                )
    finally:
        catalog.close()
