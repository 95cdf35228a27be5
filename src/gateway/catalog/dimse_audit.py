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

    def _latest(
        self, table: type[Association | StoreRefusal], columns: tuple[str, ...], limit: int
    ) -> list[dict[str, Any]]:
        """The ``limit`` newest rows of ``table`` as dicts of ``columns``."""
        with self.catalog.session() as s:
            rows = s.scalars(select(table).order_by(table.id.desc()).limit(limit))
            return [{name: getattr(r, name) for name in columns} for r in rows]

    def store_refusals(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return the most recent refused C-STOREs."""
        columns = ("association_id", "at", "sop_instance_uid", "status", "reason")
        return self._latest(StoreRefusal, columns, limit)

    def associations(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return the most recent association audit records."""
        columns = (
            "id",
            "calling_ae",
            "called_ae",
            "peer_host",
            "peer_port",
            "tls",
            "started_at",
            "ended_at",
            "result",
            "reason",
            "instances_received",
            "instances_failed",
            "bytes_received",
        )
        return self._latest(Association, columns, limit)
