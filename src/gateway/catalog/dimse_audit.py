"""The DICOM audit trail: associations (requested, accepted, rejected, ended) and refusals.

Written by the receiver's handlers (:mod:`gateway.receive.handlers`) and the instance
store; read by operators and tests. Never holds patient data: AE titles, addresses,
outcomes, SOP Instance UIDs and reasons.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from .catalog import CatalogStore
from .records import utcnow
from .schema import Association, StoreRefusal

__all__ = ["DimseAudit"]


class DimseAudit(CatalogStore):
    """The ``associations`` and ``store_refusals`` rows."""

    def open_association(
        self, calling_ae: str, called_ae: str, host: str, port: int, tls: bool
    ) -> int:
        """Record an association request; return its audit id."""
        with self.catalog.session() as s:
            row = Association(
                calling_ae=calling_ae,
                called_ae=called_ae,
                peer_host=host,
                peer_port=port,
                tls=tls,
                started_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return int(row.id)

    def set_association_result(self, assoc_id: int, result: str, reason: str | None = None) -> None:
        """Record accepted/rejected (with the reason)."""
        with self.catalog.session() as s:
            s.execute(
                update(Association)
                .where(Association.id == assoc_id)
                .values(result=result, reason=reason)
            )

    def close_association(
        self, assoc_id: int, outcome: str | None = None, reason: str | None = None
    ) -> None:
        """Record the end of an association (released / aborted / closed, and why)."""
        with self.catalog.session() as s:
            row = s.get(Association, assoc_id)
            if row is None:
                return
            row.ended_at = utcnow()
            if outcome and row.result in ("requested", "accepted"):
                row.result = outcome
                if reason:
                    row.reason = reason[:2000]

    def record_refused_connection(self, host: str, port: int, tls: bool, reason: str) -> None:
        """Audit a connection refused before it sent an association request."""
        now = utcnow()
        with self.catalog.session() as s:
            s.add(
                Association(
                    calling_ae="",
                    called_ae="",
                    peer_host=host[:64],
                    peer_port=port,
                    tls=tls,
                    started_at=now,
                    ended_at=now,
                    result="refused",
                    reason=reason[:2000],
                )
            )

    def record_refused_store(
        self, assoc_id: int | None, sop_instance_uid: str, status: int, reason: str
    ) -> None:
        """Audit one refused C-STORE (and count it on its association)."""
        with self.catalog.session() as s:
            s.add(
                StoreRefusal(
                    association_id=assoc_id,
                    at=utcnow(),
                    sop_instance_uid=sop_instance_uid[:64],
                    status=status,
                    reason=reason[:2000],
                )
            )
            if assoc_id is not None:
                s.execute(
                    update(Association)
                    .where(Association.id == assoc_id)
                    .values(instances_failed=Association.instances_failed + 1)
                )

    def store_refusals(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return the most recent refused C-STOREs."""
        with self.catalog.session() as s:
            rows = s.scalars(select(StoreRefusal).order_by(StoreRefusal.id.desc()).limit(limit))
            return [
                {
                    "association_id": r.association_id,
                    "at": r.at,
                    "sop_instance_uid": r.sop_instance_uid,
                    "status": r.status,
                    "reason": r.reason,
                }
                for r in rows
            ]

    def associations(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return the most recent association audit records."""
        with self.catalog.session() as s:
            rows = s.scalars(select(Association).order_by(Association.id.desc()).limit(limit))
            return [
                {
                    "id": r.id,
                    "calling_ae": r.calling_ae,
                    "called_ae": r.called_ae,
                    "peer_host": r.peer_host,
                    "peer_port": r.peer_port,
                    "tls": r.tls,
                    "started_at": r.started_at,
                    "ended_at": r.ended_at,
                    "result": r.result,
                    "reason": r.reason,
                    "instances_received": r.instances_received,
                    "instances_failed": r.instances_failed,
                    "bytes_received": r.bytes_received,
                }
                for r in rows
            ]
