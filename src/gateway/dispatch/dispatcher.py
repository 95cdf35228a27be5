"""Delivering queued results: one thread per destination, retries with backoff.

A destination that is down only delays its own deliveries: every destination has its
own thread and its own rows, and scoring never waits for dispatch.
"""

from __future__ import annotations

import logging
import threading

from ..catalog import Catalog
from ..catalog.deliveries import DeliveryStore
from ..config import Settings
from ..errors import DispatchError
from .destinations import (
    Destination,
    DicomDestination,
    DicomWebDestination,
    FhirDestination,
)
from .outbox import Outbox

__all__ = ["Dispatcher", "build_destinations"]

logger = logging.getLogger(__name__)


def build_destinations(settings: Settings) -> list[Destination]:
    """The configured destinations."""
    d = settings.dispatch
    out: list[Destination] = [
        DicomDestination(n, settings.dicom.ae_title, d.timeout_s) for n in d.dicom
    ]
    out += [DicomWebDestination(n, d.timeout_s) for n in d.dicomweb]
    out += [FhirDestination(n, d.timeout_s) for n in d.fhir]
    return out


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
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []

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
            logger.log(
                logging.ERROR if outcome == "dead-letter" else logging.WARNING,
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
        self._wake.set()

    def start(self) -> None:
        """One thread per destination."""
        self._stop.clear()
        for destination in self.destinations:
            thread = threading.Thread(
                target=self._loop,
                args=(destination,),
                name=f"dispatch-{destination.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def _loop(self, destination: Destination) -> None:
        while not self._stop.is_set():
            try:
                worked = self.run_once(destination)
            except Exception:
                logger.exception("dispatch loop error", extra={"destination": destination.name})
                worked = False
            if not worked:
                self._wake.wait(self.settings.poll_interval_s)
                self._wake.clear()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the threads (an attempt in progress finishes)."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self._threads = []
