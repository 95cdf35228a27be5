"""Backing off repeated failed logins per client address (the status page's token form).

After ``threshold`` failed logins in a row from one address, each further attempt from
it must wait ``2 ** (failures - threshold)`` seconds (at most :data:`MAX_WAIT_S`) after
the last failure; an attempt that comes earlier is answered 429 with ``Retry-After``
without the token being looked at. A successful login resets the address. The state is
per process and bounded (the addresses seen longest ago are forgotten first).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["LoginThrottle", "MAX_WAIT_S"]

#: Longest wait between attempts from one address.
MAX_WAIT_S = 300.0
_MAX_ADDRESSES = 10_000


@dataclass
class _Failures:
    count: int
    last: float


class LoginThrottle:
    """Failed logins per client address, and how long each must wait.

    Parameters
    ----------
    threshold : int
        Failed logins in a row allowed before the waits start.
    clock : callable, optional
        Monotonic seconds (tests pass their own).
    """

    def __init__(self, threshold: int = 5, clock: object = None) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.threshold = threshold
        self._clock = clock if callable(clock) else time.monotonic
        self._failures: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def _now(self) -> float:
        return float(self._clock())  # type: ignore[operator]

    def wait_s(self, client: str) -> float:
        """Seconds ``client`` must still wait before its next attempt (0: it may try)."""
        with self._lock:
            entry = self._failures.get(client)
            if entry is None or entry.count < self.threshold:
                return 0.0
            wait = min(MAX_WAIT_S, 2.0 ** min(entry.count - self.threshold, 16))
            return max(0.0, entry.last + wait - self._now())

    def failed(self, client: str) -> int:
        """Count a failed login; return the failures in a row."""
        with self._lock:
            entry = self._failures.pop(client, None) or _Failures(0, 0.0)
            entry.count += 1
            entry.last = self._now()
            self._failures[client] = entry
            while len(self._failures) > _MAX_ADDRESSES:
                self._failures.popitem(last=False)
            return entry.count

    def succeeded(self, client: str) -> None:
        """Forget the failures of ``client``."""
        with self._lock:
            self._failures.pop(client, None)
