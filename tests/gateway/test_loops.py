"""PollingLoop: a failing step is retried, with backoff and a quiet log, until it works."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from gateway import loops
from gateway.loops import PollingLoop

pytestmark = pytest.mark.unit


def test_failing_steps_back_off_log_one_line_each_and_the_loop_recovers(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loops, "FAILED_STEP_BACKOFF_S", 0.05)
    caplog.set_level(logging.INFO, logger="gateway.loops")
    calls: list[float] = []
    recovered = threading.Event()

    def step() -> bool:
        calls.append(time.monotonic())
        if len(calls) <= 5:
            raise ConnectionError("the broker is down")
        recovered.set()
        return False

    loop = PollingLoop("test-loop", step, interval_s=0.01)
    loop.start()
    try:
        assert recovered.wait(10)
    finally:
        loop.stop(5)
    gaps = [b - a for a, b in zip(calls, calls[1:6], strict=False)]
    # The interval after the first failure, then at least 0.05, 0.1, 0.2, 0.4 s.
    for gap, least in zip(gaps[1:], (0.05, 0.1, 0.2, 0.4), strict=True):
        assert gap >= least * 0.95
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 5
    assert failures[0].exc_info is not None  # the first one with its traceback
    assert all(r.exc_info is None and r.error == "ConnectionError" for r in failures[1:])  # type: ignore[attr-defined]
    assert [r.getMessage() for r in caplog.records][-1] == "background step works again"
