"""Start :mod:`support.fhir_server` as a separate process for a test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from .gateway import free_port

TESTS = Path(__file__).resolve().parents[1]


@dataclass
class FhirPeer:
    url: str

    def mode(self, mode: str) -> None:
        httpx.post(f"{self.url}/_admin/mode", json={"mode": mode}, timeout=10).raise_for_status()

    def counts(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/_admin/counts", timeout=10).json())

    def search(self, kind: str, identifier: str) -> list[dict[str, object]]:
        bundle = httpx.get(
            f"{self.url}/{kind}", params={"identifier": identifier}, timeout=10
        ).json()
        return [e["resource"] for e in bundle.get("entry", [])]


@contextmanager
def fhir_server() -> Iterator[FhirPeer]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "support.fhir_server", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/_admin/counts", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("FHIR test server did not start") from None
                time.sleep(0.1)
        yield FhirPeer(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a request is hanging on purpose
            proc.kill()
            proc.wait(timeout=10)
