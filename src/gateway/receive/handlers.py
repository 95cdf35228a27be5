"""pynetdicom event handlers: association audit and access, C-ECHO, C-STORE.

A C-STORE is acknowledged with 0x0000 only after the instance is hashed, ``fsync``'d,
renamed into the spool and recorded in the catalog (whose commit is itself durable).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from ..catalog import Catalog
from ..spool import Spool
from .access import AccessPolicy
from .guard import SUCCESS, store_guard
from .store import InstanceStore

__all__ = ["ReceiveHandlers"]

logger = logging.getLogger(__name__)


@dataclass
class _AssocState:
    audit_id: int
    calling_ae: str
    admitted: bool = False


class ReceiveHandlers:
    """The listener's behaviour, bound to pynetdicom events by :class:`DicomListener`.

    Parameters
    ----------
    catalog : Catalog
        Where instances and associations are recorded.
    spool : Spool
        Where files go.
    policy : AccessPolicy
        Who may associate.
    tls : bool
        Whether the listener runs DICOM TLS (recorded in the audit).
    accepted : tuple of str, optional
        SOP classes stored (``dicom.sop_classes``).
    """

    def __init__(
        self,
        catalog: Catalog,
        spool: Spool,
        policy: AccessPolicy,
        tls: bool,
        accepted: tuple[str, ...] | None = None,
    ) -> None:
        self.catalog = catalog
        self.spool = spool
        self.store = InstanceStore(catalog, spool, accepted)
        self.policy = policy
        self.tls = tls
        self._states: dict[int, _AssocState] = {}
        self._lock = threading.Lock()

    def _state(self, assoc: Any) -> _AssocState | None:
        with self._lock:
            return self._states.get(id(assoc))

    # -- association life cycle -------------------------------------------------------

    def on_requested(self, event: Any) -> None:
        """Audit the request, then admit it or send A-ASSOCIATE-RJ (fails closed)."""
        assoc = event.assoc
        try:
            self._admit(assoc)
        except Exception:
            logger.exception("association check failed; rejecting (temporary congestion)")
            if not assoc.is_rejected:
                assoc.acse.send_reject(0x02, 0x03, 0x01)
                assoc.kill()

    def _admit(self, assoc: Any) -> None:
        requestor = assoc.requestor
        request = requestor.primitive  # the A-ASSOCIATE-RQ; ACSE has not parsed it yet
        calling = str(request.calling_ae_title).strip()
        called = str(request.called_ae_title).strip()
        host, port = str(requestor.address), int(requestor.port)
        audit_id = self.catalog.open_association(calling, called, host, port, self.tls)
        state = _AssocState(audit_id, calling)
        with self._lock:
            self._states[id(assoc)] = state
        decision = self.policy.admit(calling, host)
        if not decision.accepted:
            logger.warning(
                "association rejected",
                extra={"calling_ae": calling, "peer": host, "reason": decision.reason},
            )
            self.catalog.set_association_result(audit_id, "rejected", decision.reason)
            if decision.transient:
                assoc.acse.send_reject(0x02, 0x03, 0x02)  # transient, local limit exceeded
            else:
                assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent, calling AE not recognised
            # As pynetdicom does for its own rejections: wait until the A-ASSOCIATE-RJ is
            # sent and the peer has closed, so the peer sees a rejection, not an abort.
            assoc.kill()
            return
        state.admitted = True

    def on_accepted(self, event: Any) -> None:
        """Record that negotiation succeeded."""
        state = self._state(event.assoc)
        if state is not None:
            self.catalog.set_association_result(state.audit_id, "accepted")
            logger.info(
                "association accepted",
                extra={"calling_ae": state.calling_ae, "audit_id": state.audit_id},
            )

    def on_rejected(self, event: Any) -> None:
        """Record a rejection by pynetdicom itself (e.g. the total association limit)."""
        state = self._state(event.assoc)
        if state is not None:
            self.catalog.set_association_result(
                state.audit_id, "rejected", "association limit or negotiation failure"
            )

    def on_released(self, event: Any) -> None:
        """Record a normal release."""
        self._close(event.assoc, "released")

    def on_aborted(self, event: Any) -> None:
        """Record an abort."""
        self._close(event.assoc, "aborted")

    def on_conn_close(self, event: Any) -> None:
        """Clean up after every connection (accepted or not)."""
        self._close(event.assoc, "closed")

    def _close(self, assoc: Any, outcome: str) -> None:
        with self._lock:
            state = self._states.pop(id(assoc), None)
        if state is None:
            return
        if state.admitted:
            self.policy.release(state.calling_ae)
        self.catalog.close_association(state.audit_id, outcome)

    # -- services ---------------------------------------------------------------------

    def on_echo(self, event: Any) -> int:
        """C-ECHO: always success."""
        return SUCCESS

    def on_store(self, event: Any) -> Dataset:
        """C-STORE: validate, store durably, record, then acknowledge."""
        request = event.request
        state = self._state(event.assoc)
        calling = state.calling_ae if state else "?"
        sop_uid = str(request.AffectedSOPInstanceUID)
        with store_guard(sop_uid, calling) as outcome:
            self.store.store(
                Path(event.dataset_path),
                str(request.AffectedSOPClassUID),
                sop_uid,
                state.audit_id if state else None,
            )
            outcome.status = SUCCESS
        if outcome.status != SUCCESS:
            try:
                self.catalog.count_failed_store(state.audit_id if state else None)
            except Exception:
                logger.exception("cannot record the refused C-STORE in the audit")
        return outcome.response()
