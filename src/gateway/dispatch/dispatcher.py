"""Delivering queued results: one thread per destination, retries with backoff.

A destination that is down only delays its own deliveries: every destination has its
own thread and its own rows, and scoring never waits for dispatch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..catalog import Catalog
from ..catalog.deliveries import DeliveryStore
from ..catalog.schema import AttemptOutcome
from ..config import Settings
from ..errors import DispatchError
from ..loops import PollingLoop
from ..metrics import DISPATCH_ATTEMPTS
from ..outbox import Outbox
from .destinations import Destination, build_destinations

__all__ = ["Dispatcher"]

logger = logging.getLogger(__name__)


class Dispatcher:
    """Sends pending deliveries.

    Parameters
    ----------
    catalog : Catalog
        The catalog (deliveries table).
    outbox : Outbox
        Where the files are.
    settings : Settings
        Destinations and retry policy.
    destinations : list of Destination, optional
        Instead of those built from ``settings`` (tests).
    """

    def __init__(
        self,
        catalog: Catalog,
        outbox: Outbox,
        settings: Settings,
        destinations: list[Destination] | None = None,
    ) -> None:
        self.store = DeliveryStore(catalog)
        self.outbox = outbox
        self.settings = settings.dispatch
        self.destinations = (
            destinations if destinations is not None else build_destinations(settings)
        )
        self._loops = [
            PollingLoop(f"dispatch-{d.name}", self._stepper(d), settings.dispatch.poll_interval_s)
            for d in self.destinations
        ]

    def _stepper(self, destination: Destination) -> Callable[[], bool]:
        return lambda: self.run_once(destination)

    def run_once(self, destination: Destination) -> bool:
        """Attempt one due delivery for ``destination``; False if none was due."""
        lease = self.settings.timeout_s * 4 + 30
        delivery = self.store.claim(destination.name, lease)
        if delivery is None:
            return False
        folder = self.outbox.folder(delivery.study_uid)
        files = [folder / name for name in delivery.files]
        try:
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise DispatchError(f"outbox files missing: {missing}")
            destination.send(files)
        except Exception as exc:
            message = str(exc) if isinstance(exc, DispatchError) else f"{type(exc).__name__}: {exc}"
            outcome = self.store.failed(
                delivery.delivery_id, message, self.settings.backoff_s, self.settings.backoff_max_s
            )
            DISPATCH_ATTEMPTS.labels(destination.name, outcome).inc()
            logger.log(
                logging.ERROR if outcome is AttemptOutcome.DEAD_LETTER else logging.WARNING,
                "delivery failed",
                extra={
                    "destination": destination.name,
                    "study_uid": delivery.study_uid,
                    "attempt": delivery.attempts,
                    "outcome": outcome,
                    "error": message,
                },
            )
            return True
        self.store.delivered(delivery.delivery_id)
        DISPATCH_ATTEMPTS.labels(destination.name, AttemptOutcome.DELIVERED).inc()
        logger.info(
            "delivered",
            extra={
                "destination": destination.name,
                "study_uid": delivery.study_uid,
                "files": list(delivery.files),
            },
        )
        return True

    def wake(self) -> None:
        """Look for new deliveries now."""
        for loop in self._loops:
            loop.wake()

    def start(self) -> None:
        """One thread per destination."""
        for loop in self._loops:
            loop.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the threads (an attempt in progress finishes)."""
        for loop in self._loops:
            loop.stop(timeout_s)
