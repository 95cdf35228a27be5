"""The listener's behaviour: admission and audit of connections and associations, C-ECHO, C-STORE.

A C-STORE is acknowledged with 0x0000 only after the instance is hashed, ``fsync``'d,
checked, moved into the spool and recorded in the catalog (whose commit is itself durable).

Every refusal is audited in the catalog and logged once, with who (calling AE), from
where (address) and why, never with patient data: connections refused before
association (:mod:`.transport`), association requests rejected here, associations
aborted for an oversized PDU, and each refused C-STORE. What an association holds (its
per-AE slot, its audit row, half-received files) is released in
:meth:`ReceiveHandlers.association_ended`, which runs on every path an association can
end by, including ones where pynetdicom raises no event.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.pdu_primitives import A_ASSOCIATE

from ..catalog import Catalog
from ..catalog.dimse_audit import DimseAudit
from ..metrics import ASSOCIATION_REFUSALS, ASSOCIATIONS, RefusalReason
from .access import AccessPolicy
from .guard import SUCCESS, store_guard
from .store import InstanceStore

__all__ = ["ReceiveHandlers"]

logger = logging.getLogger(__name__)

#: Connection refusals from one address are audited at most once per this many seconds
#: (the rest are counted into the next row), so a flood cannot flood the catalog.
REFUSAL_AUDIT_INTERVAL_S = 1.0


@dataclass
class _AssocState:
    audit_id: int | None = None
    calling_ae: str = "?"
    admitted: bool = False
    refusal: str | None = None


@dataclass
class _RefusalWindow:
    last_audit: float = 0.0
    suppressed: int = 0


@dataclass
class _Refusals:
    by_host: dict[str, _RefusalWindow] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _certificate_names(assoc: Any) -> frozenset[str] | None:
    """Subject CN and subject alternative names of the peer's TLS certificate, if any."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return None
    cert = getpeercert() or {}
    names = {
        str(value) for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"
    }
    names |= {str(value) for _kind, value in cert.get("subjectAltName", ())}
    return frozenset(names)


class ReceiveHandlers:
    """Bound to pynetdicom events and to the gated server by :class:`DicomListener`.

    Parameters
    ----------
    catalog : Catalog
        Where instances and associations are recorded.
    store : InstanceStore
        Where files go (:meth:`InstanceStore.for_settings`).
    policy : AccessPolicy
        Who may associate, and how many at once.
    tls : bool
        Whether the listener runs DICOM TLS (recorded in the audit).
    called_ae : str
        This gateway's AE title; requests addressed to another are rejected.
    """

    def __init__(
        self,
        catalog: Catalog,
        store: InstanceStore,
        policy: AccessPolicy,
        tls: bool,
        called_ae: str = "IHGAMP",
    ) -> None:
        self.catalog = catalog
        self.audit = DimseAudit(catalog)
        self.spool = store.spool
        self.store = store
        self.files = self.store.files
        self.policy = policy
        self.tls = tls
        self.called_ae = called_ae
        self._states: dict[int, _AssocState] = {}
        self._lock = threading.Lock()
        self._refusals = _Refusals()

    def _state(self, assoc: Any) -> _AssocState | None:
        with self._lock:
            return self._states.get(id(assoc))

    # -- connections (called by the gated server) ----------------------------------------

    def connection_refused(
        self, host: str, port: int, tls: bool, reason: str, kind: RefusalReason
    ) -> None:
        """Audit and log a connection refused before its association request."""
        ASSOCIATION_REFUSALS.labels(kind).inc()
        now = time.monotonic()
        with self._refusals.lock:
            window = self._refusals.by_host.setdefault(host, _RefusalWindow())
            if now - window.last_audit < REFUSAL_AUDIT_INTERVAL_S:
                window.suppressed += 1
                return
            suppressed, window.suppressed, window.last_audit = window.suppressed, 0, now
            if len(self._refusals.by_host) > 10_000:  # forget quiet addresses
                self._refusals.by_host = {
                    h: w
                    for h, w in self._refusals.by_host.items()
                    if now - w.last_audit < REFUSAL_AUDIT_INTERVAL_S
                }
        text = reason if not suppressed else f"{reason} (and {suppressed} more refused before)"
        logger.warning("connection refused", extra={"peer": host, "reason": text})
        try:
            self.audit.record_refused_connection(host, port, tls, text)
        except Exception:
            logger.exception("cannot audit a refused connection")

    def protocol_refused(self, assoc: Any, reason: str) -> None:
        """Record that ``assoc`` was aborted for a protocol violation."""
        state = self._state(assoc)
        ASSOCIATION_REFUSALS.labels(RefusalReason.PDU).inc()
        logger.warning(
            "association aborted",
            extra={"calling_ae": state.calling_ae if state else "?", "reason": reason},
        )
        if state is not None:
            state.refusal = reason

    def association_started(self, assoc: Any) -> None:
        """Track a connection handed to pynetdicom; route its data sets into the spool."""
        with self._lock:
            self._states[id(assoc)] = _AssocState()
        self.files.attach(assoc)

    def association_ended(self, assoc: Any) -> None:
        """Release what the association held, whichever way it ended."""
        with self._lock:
            state = self._states.pop(id(assoc), None)
        self.files.discard_owned(assoc, getattr(assoc, "dul", None))
        if state is None:
            return
        if state.admitted:
            self.policy.release(state.calling_ae)
        if state.audit_id is None:
            return
        if state.refusal is not None:
            outcome, reason = "aborted", state.refusal
        elif assoc.is_released:
            outcome, reason = "released", None
        elif assoc.is_aborted:
            outcome, reason = "aborted", None
        else:
            outcome, reason = "closed", None
        try:
            self.audit.close_association(state.audit_id, outcome, reason)
        except Exception:
            logger.exception("cannot record the end of an association")

    # -- association negotiation (pynetdicom events) -------------------------------------

    def on_requested(self, event: Any) -> None:
        """Audit the request, then admit it or send A-ASSOCIATE-RJ (fails closed)."""
        assoc = event.assoc
        try:
            self._admit(assoc)
        except Exception:
            logger.exception("association check failed; rejecting (temporary congestion)")
            if not assoc.is_rejected and not assoc.is_aborted:
                assoc.acse.send_reject(0x02, 0x03, 0x01)
                assoc.kill()

    def _admit(self, assoc: Any) -> None:
        state = self._state(assoc)
        if state is None:  # not started through the gated server (cannot happen)
            state = _AssocState()
            with self._lock:
                self._states[id(assoc)] = state
        request = assoc.requestor.primitive
        host, port = str(assoc.requestor.address), int(assoc.requestor.port)
        if not isinstance(request, A_ASSOCIATE):  # an undecodable request became an abort
            self.connection_refused(
                host, port, self.tls, "association request not understood", RefusalReason.MALFORMED
            )
            assoc.abort()
            return
        calling = str(request.calling_ae_title).strip()
        called = str(request.called_ae_title).strip()
        state.calling_ae = calling
        state.audit_id = self.audit.open_association(calling, called, host, port, self.tls)
        if called != self.called_ae:
            reason = f"called AE {called!r} is not {self.called_ae!r}"
            self._reject(assoc, state, reason, (0x01, 0x01, 0x07), RefusalReason.CALLED_AE)
            return
        decision = self.policy.admit(calling, host, _certificate_names(assoc))
        if not decision.accepted:
            # transient, local limit exceeded | permanent, calling AE not recognised
            rsd = (0x02, 0x03, 0x02) if decision.transient else (0x01, 0x01, 0x03)
            kind = RefusalReason(decision.kind) if decision.kind else RefusalReason.CALLING_AE
            self._reject(assoc, state, decision.reason or "refused", rsd, kind)
            return
        state.admitted = True

    def _reject(
        self,
        assoc: Any,
        state: _AssocState,
        reason: str,
        rsd: tuple[int, int, int],
        kind: RefusalReason,
    ) -> None:
        ASSOCIATION_REFUSALS.labels(kind).inc()
        logger.warning(
            "association rejected",
            extra={
                "calling_ae": state.calling_ae,
                "peer": str(assoc.requestor.address),
                "reason": reason,
            },
        )
        if state.audit_id is not None:
            self.audit.set_association_result(state.audit_id, "rejected", reason)
        assoc.acse.send_reject(*rsd)
        # As pynetdicom does for its own rejections: wait until the A-ASSOCIATE-RJ is
        # sent and the peer has closed, so the peer sees a rejection, not an abort.
        assoc.kill()

    def on_accepted(self, event: Any) -> None:
        """Record that negotiation succeeded."""
        state = self._state(event.assoc)
        ASSOCIATIONS.inc()
        if state is not None and state.audit_id is not None:
            self.audit.set_association_result(state.audit_id, "accepted")
            logger.info(
                "association accepted",
                extra={"calling_ae": state.calling_ae, "audit_id": state.audit_id},
            )

    def on_rejected(self, event: Any) -> None:
        """Record a rejection by pynetdicom itself (presentation contexts, its own limit)."""
        state = self._state(event.assoc)
        if state is not None and state.audit_id is not None:
            ASSOCIATION_REFUSALS.labels(RefusalReason.STACK).inc()
            reason = "rejected by the DICOM stack: negotiation failure or association limit"
            logger.warning(
                "association rejected", extra={"calling_ae": state.calling_ae, "reason": reason}
            )
            self.audit.set_association_result(state.audit_id, "rejected", reason)

    # -- services ---------------------------------------------------------------------

    def on_echo(self, event: Any) -> int:
        """C-ECHO: always success."""
        return SUCCESS

    def on_store(self, event: Any) -> Dataset:
        """C-STORE: validate, store durably, record, then acknowledge."""
        request = event.request
        state = self._state(event.assoc)
        calling = state.calling_ae if state else "?"
        audit_id = state.audit_id if state else None
        sop_uid = str(request.AffectedSOPInstanceUID)
        with store_guard(sop_uid, calling) as outcome:
            self.store.store_received(
                event.dataset_path, str(request.AffectedSOPClassUID), sop_uid, audit_id, calling
            )
            outcome.status = SUCCESS
        self.store.audit_refusal(audit_id, sop_uid, outcome)
        return outcome.response()
