"""Receiving a large instance keeps the gateway's memory bounded (streamed to disk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.receive_memory import measure

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_half_gigabyte_instance_streams_to_disk(tmp_path: Path) -> None:
    figures = measure(512, tmp_path)
    assert figures["status"] == 0 and figures["byte_identical"] is True
    # Memory does not grow with the instance: far below its 512 MiB.
    assert float(figures["rss_growth_mib"]) < 64.0, figures  # type: ignore[arg-type]


def test_a_pdu_declaring_four_gigabytes_is_aborted_before_it_is_buffered(tmp_path: Path) -> None:
    """After association, a P-DATA header of ~4 GiB followed by streamed data."""
    from bench.receive_memory import rss_kib
    from support.gateway import GatewayProcess, free_port, settings_dict, write_toml
    from support.wire import associate_rq, connect, pdu_header

    port = free_port()
    config = write_toml(
        tmp_path / "gw.toml",
        settings_dict(tmp_path, dicom={"port": port}, worker={"count": 0}),
    )
    gw = GatewayProcess(config, tmp_path / "gw.log").start()
    try:
        gw.wait_listening(port)
        assert gw.proc is not None
        before = rss_kib(gw.proc.pid)
        sock = connect(port)
        sock.sendall(associate_rq())
        assert sock.recv(1) == b"\x02"  # A-ASSOCIATE-AC
        sock.recv(65536)
        sock.sendall(pdu_header(0x04, 0xFFFFFFF0))
        sent = 0
        try:
            while sent < 2**30:
                sock.sendall(b"\0" * 2**20)
                sent += 2**20
        except OSError:
            pass  # the gateway aborted and closed: exactly what should happen
        after = rss_kib(gw.proc.pid)
        sock.close()
        assert sent < 64 * 2**20, sent  # it stopped reading at the header
        assert after < 300 * 1024 and after - before < 32 * 1024, (before, after)
        assert gw.proc.poll() is None  # still serving
    finally:
        gw.stop()
    assert "exceeds 262144" in (tmp_path / "gw.log").read_text()
