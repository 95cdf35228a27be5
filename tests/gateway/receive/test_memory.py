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
