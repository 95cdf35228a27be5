"""The node port of roles without HTTP: health, readiness and metrics over real HTTP."""

from __future__ import annotations

import httpx
import pytest

from gateway import metrics
from gateway.probes import NodeEndpoint

pytestmark = pytest.mark.unit


def test_health_ready_and_metrics_answer_on_the_node_port() -> None:
    state = {"ready": False}

    def ready() -> bool:
        if state.get("broken"):
            raise RuntimeError("catalog unreachable")
        return state["ready"]

    endpoint = NodeEndpoint("127.0.0.1", 0, ready)
    port = endpoint.start()
    base = f"http://127.0.0.1:{port}"
    try:
        assert httpx.get(f"{base}/health", timeout=5).json() == {"status": "ok"}
        not_ready = httpx.get(f"{base}/ready", timeout=5)
        assert (not_ready.status_code, not_ready.json()) == (503, {"ready": False})
        state["ready"] = True
        assert httpx.get(f"{base}/ready", timeout=5).status_code == 200
        state["broken"] = True  # an exception while checking counts as not ready
        assert httpx.get(f"{base}/ready", timeout=5).status_code == 503
        before = httpx.get(f"{base}/metrics", timeout=5)
        assert before.status_code == 200
        assert before.headers["content-type"].startswith("text/plain")
        metrics.JOBS_PUBLISHED.labels(by="probe-test").inc()
        after = httpx.get(f"{base}/metrics", timeout=5).text
        assert "ihgamp_jobs_published_total" in after and after != before.text
        assert httpx.get(f"{base}/status", timeout=5).status_code == 404
        assert httpx.post(f"{base}/health", timeout=5).status_code == 405
    finally:
        endpoint.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/health", timeout=2)
