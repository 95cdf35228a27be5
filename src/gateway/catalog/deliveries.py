"""Delivery rows (one result to one destination) and the stored FHIR Observations.

A delivery is claimed by pushing its ``next_attempt_at`` forward (a short lease), so two
gateway processes never send the same delivery at once. Failures back off
exponentially up to a cap; after ``max_attempts`` the delivery is ``dead-letter`` until
an operator runs ``ihgamp redispatch`` (which applies the current ``dispatch.max_attempts``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import CatalogError
from ..loops import doubling
from .catalog import CatalogStore, utcnow
from .leases import claim_first
from .schema import AttemptOutcome, Delivery, DeliveryState, Study

__all__ = ["DeliveryStore", "DeliveryView"]


@dataclass(frozen=True)
class DeliveryView:
    """A delivery as the dispatcher and ``ihgamp status`` see it."""

    delivery_id: int
    study_uid: str
    report_key: str
    destination: str
    kind: str
    files: tuple[str, ...]
    state: str
    attempts: int
    max_attempts: int
    last_error: str | None
    next_attempt_at: dt.datetime
    delivered_at: dt.datetime | None
    created_at: dt.datetime | None = None


def _view(row: Delivery, study_uid: str) -> DeliveryView:
    return DeliveryView(
        row.id,
        study_uid,
        row.report_key,
        row.destination,
        row.kind,
        tuple(json.loads(row.files)),
        row.state,
        row.attempts,
        row.max_attempts,
        row.last_error,
        row.next_attempt_at,
        row.delivered_at,
        row.created_at,
    )


class DeliveryStore(CatalogStore):
    """The ``deliveries`` table."""

    def create(
        self,
        study_uid: str,
        report_key: str,
        destination: str,
        kind: str,
        files: list[str],
        max_attempts: int,
    ) -> int:
        """Create a pending delivery (idempotent per report and destination)."""
        try:
            return self._create(study_uid, report_key, destination, kind, files, max_attempts)
        except IntegrityError:  # created concurrently by another process: use that row
            return self._create(study_uid, report_key, destination, kind, files, max_attempts)

    def _create(
        self,
        study_uid: str,
        report_key: str,
        destination: str,
        kind: str,
        files: list[str],
        max_attempts: int,
    ) -> int:
        with self.catalog.session() as s:
            study = s.scalars(select(Study).where(Study.study_uid == study_uid)).first()
            if study is None:
                raise CatalogError(f"no study {study_uid} in the catalog")
            existing = s.scalars(
                select(Delivery).where(
                    Delivery.report_key == report_key, Delivery.destination == destination
                )
            ).first()
            if existing is not None:
                return int(existing.id)
            row = Delivery(
                study_id=study.id,
                report_key=report_key,
                destination=destination,
                kind=kind,
                files=json.dumps(files),
                state=DeliveryState.PENDING,
                attempts=0,
                max_attempts=max_attempts,
                next_attempt_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return int(row.id)

    def claim(
        self, destination: str, lease_s: float, now: dt.datetime | None = None
    ) -> DeliveryView | None:
        """Take the oldest due pending delivery for ``destination``.

        The claim pushes ``next_attempt_at`` ``lease_s`` ahead (the attempt's lease): a
        dispatcher that dies mid-attempt leaves the delivery due again after it.
        """
        now = now or utcnow()
        candidates = (
            select(Delivery)
            .where(
                Delivery.destination == destination,
                Delivery.state == DeliveryState.PENDING,
                Delivery.next_attempt_at <= now,
            )
            .order_by(Delivery.next_attempt_at, Delivery.id)
        )

        def guard(row: Delivery) -> list[ColumnElement[bool]]:
            return [
                Delivery.next_attempt_at == row.next_attempt_at,
                Delivery.state == DeliveryState.PENDING,
            ]

        def values(row: Delivery) -> dict[str, object]:
            return {
                "next_attempt_at": now + dt.timedelta(seconds=lease_s),
                "attempts": row.attempts + 1,
            }

        def won(s: Session, row: Delivery) -> DeliveryView:
            study = s.get(Study, row.study_id)
            return _view(row, study.study_uid if study is not None else "?")

        return claim_first(self.catalog, candidates, guard, values, won)

    def delivered(self, delivery_id: int) -> None:
        """Mark a delivery done."""
        with self.catalog.session() as s:
            row = s.get(Delivery, delivery_id)
            if row is not None:
                row.state = DeliveryState.DELIVERED
                row.delivered_at = utcnow()
                row.last_error = None

    def failed(
        self, delivery_id: int, error: str, backoff_s: float, backoff_max_s: float
    ) -> AttemptOutcome:
        """Record a failed attempt: ``retry`` later, or ``dead-letter`` after max attempts."""
        with self.catalog.session() as s:
            row = s.get(Delivery, delivery_id)
            if row is None:
                return AttemptOutcome.LOST
            row.last_error = error[:2000]
            if row.attempts >= row.max_attempts:
                row.state = DeliveryState.DEAD_LETTER
                return AttemptOutcome.DEAD_LETTER
            delay = doubling(row.attempts, backoff_s, backoff_max_s)
            row.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
            return AttemptOutcome.RETRY

    def redispatch(
        self,
        study_uid: str | None = None,
        destination: str | None = None,
        include_delivered: bool = False,
        max_attempts: int | None = None,
    ) -> int:
        """Make dead-letter (or, optionally, delivered) deliveries pending again.

        Parameters
        ----------
        study_uid, destination : str, optional
            Only this study / destination.
        include_delivered : bool
            Also send delivered results again.
        max_attempts : int, optional
            The attempt budget from now on (the current ``dispatch.max_attempts``); a
            delivery otherwise keeps the budget it was created with.
        """
        states = [DeliveryState.DEAD_LETTER]
        if include_delivered:
            states.append(DeliveryState.DELIVERED)
        with self.catalog.session() as s:
            q = (
                select(Delivery)
                .join(Study, Study.id == Delivery.study_id)
                .where(Delivery.state.in_(states))
            )
            if study_uid:
                q = q.where(Study.study_uid == study_uid)
            if destination:
                q = q.where(Delivery.destination == destination)
            rows = list(s.scalars(q))
            for row in rows:
                row.state = DeliveryState.PENDING
                row.attempts = 0
                row.next_attempt_at = utcnow()
                row.delivered_at = None
                if max_attempts is not None:
                    row.max_attempts = max_attempts
            return len(rows)

    def deliveries(
        self, study_uid: str | None = None, states: list[str] | None = None, limit: int = 500
    ) -> list[DeliveryView]:
        """Deliveries, newest first."""
        with self.catalog.session() as s:
            q = (
                select(Delivery, Study.study_uid)
                .join(Study, Study.id == Delivery.study_id)
                .order_by(Delivery.id.desc())
                .limit(limit)
            )
            if study_uid:
                q = q.where(Study.study_uid == study_uid)
            if states:
                q = q.where(Delivery.state.in_(states))
            return [_view(row, uid) for row, uid in s.execute(q).all()]
