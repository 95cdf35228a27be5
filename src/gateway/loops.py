"""The one background-loop shape of the gateway: do a step, wait, repeat, until stopped.

Workers, dispatchers, the completion leader, the sweeper and the auto-puller each run
their work in a :class:`PollingLoop`: a daemon thread calling ``step()``; when the step
found nothing to do it waits ``interval_s`` (or until :meth:`PollingLoop.wake`), when it
did work it goes again at once. An exception in a step is logged (one line with the
traceback, never a patient identifier: steps log UIDs only) and the loop carries on,
backing off while the steps keep failing (an outage of the catalog or the broker) and
logging each further failure as one line without the traceback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["PollingLoop", "doubling"]

logger = logging.getLogger(__name__)

#: The wait after a second failed step in a row, doubled after each further one (to 60 s),
#: and never shorter than the loop's interval: an outage of the catalog or the broker is
#: waited out without flooding the log.
FAILED_STEP_BACKOFF_S = 1.0


def doubling(tries: int, first_s: float, longest_s: float) -> float:
    """The wait after ``tries`` failed tries in a row (jobs, deliveries, loops).

    ``first_s`` after the first, doubled after each further one, at most ``longest_s``.
    """
    return min(longest_s, first_s * 2.0 ** max(0, tries - 1))


class PollingLoop:
    """A named daemon thread running ``step`` until stopped.

    Parameters
    ----------
    name : str
        Thread name (shown in logs and thread dumps).
    step : callable
        Does one unit of work; returns True if there may be more to do right away.
    interval_s : float
        Wait after a step that found nothing to do.
    """

    def __init__(self, name: str, step: Callable[[], bool], interval_s: float) -> None:
        self.name = name
        self.step = step
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (once)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Skip the current wait."""
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the current step; wait up to ``timeout_s`` for it."""
        self.signal_stop()
        self.join(timeout_s)

    def signal_stop(self) -> None:
        """Ask the loop to stop after its current step (without waiting)."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for a stopping loop's thread to end."""
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, timeout_s))
            if not self._thread.is_alive():
                self._thread = None  # else `running` says a step outlived the wait

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            wait = self.interval_s
            try:
                busy = self.step()
            except Exception as exc:
                failures += 1
                wait = self._backoff(failures)
                self._log_failure(exc, failures, wait)
                busy = False
            else:
                if failures:
                    logger.info(
                        "background step works again", extra={"loop": self.name, "failed": failures}
                    )
                failures = 0
            if not busy:
                self._wake.wait(wait)
                self._wake.clear()

    def _backoff(self, failures: int) -> float:
        """The interval after one failure; then 1, 2, 4 ... up to 60 s (or the interval)."""
        if failures < 2:
            return self.interval_s
        return max(self.interval_s, doubling(failures - 1, FAILED_STEP_BACKOFF_S, 60.0))

    def _log_failure(self, exc: Exception, failures: int, wait: float) -> None:
        """The first failure of a run with its traceback, the next ones one line each."""
        extra = {"loop": self.name, "failures": failures, "retry_in_s": round(wait, 1)}
        if failures == 1:
            logger.exception("background step failed; retrying", extra=extra)
        else:
            logger.warning(
                "background step failed again; retrying",
                extra={**extra, "error": type(exc).__name__},
            )
