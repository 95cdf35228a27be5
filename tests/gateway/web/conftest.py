"""A scored, reported study behind a real HTTP server on loopback, with named tokens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.web import HttpServer
from ihgamp_core.hrd.engine import Engine
from ihgamp_core.synthetic.samples import SampleCase
from support.gateway import make_settings, settings_dict, write_toml
from support.reports import Reported, make_reported

OPERATOR = "operator-token-0123456789"
READER = "reader-token-0123456789abc"
HTTP = {
    "tokens": [
        {"name": "operator", "token": OPERATOR, "access": "operate"},
        {"name": "ehr", "token": READER},
    ]
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def running(app: Any, **kwargs: Any) -> Iterator[str]:
    """Serve ``app`` on a free loopback port; yield its base URL."""
    server = HttpServer(app, "127.0.0.1", 0, **kwargs)
    port = server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reported(
    tmp_path_factory: pytest.TempPathFactory,
    engine: Engine,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> Reported:
    """DEMO-001 scored and reported; its TOML configuration is ``folder/../gateway.toml``."""
    tmp = tmp_path_factory.mktemp("web")
    write_toml(tmp / "gateway.toml", settings_dict(tmp, http=HTTP))
    settings = make_settings(tmp, http=HTTP)
    return make_reported(tmp, engine, samples_root, sample_cases["DEMO-001"], settings)
