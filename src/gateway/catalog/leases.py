"""Leased rows: how work and roles are handed out safely across threads and nodes.

:func:`claim_first` is the one claim loop of the catalog (jobs and deliveries): read the
first candidate row, then take it with a conditional ``UPDATE ... WHERE <what was
seen>``; the writer whose update changes a row wins, every other retries with the next
candidate. It is safe on SQLite and PostgreSQL without row locks.

:class:`NamedLease` is a cluster-wide lease on a name (a row of ``leases``), e.g. the
completion leader: acquired when free or expired, renewed by its holder, taken over by
another node when the holder stops renewing it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, CursorResult, Select, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .catalog import Catalog, utcnow
from .schema import Lease

__all__ = ["LEADER_LEASE", "NamedLease", "claim_first"]

logger = logging.getLogger(__name__)

#: The lease the completion monitor, the sweeper and the auto-puller act under.
LEADER_LEASE = "completion"

_T = TypeVar("_T")
_Row = TypeVar("_Row")


def claim_first(
    catalog: Catalog,
    candidates: Select[Any],
    guard: Callable[[_Row], Sequence[ColumnElement[bool]]],
    values: Callable[[_Row], dict[str, Any]],
    won: Callable[[Session, _Row], _T | None],
    attempts: int = 10,
) -> _T | None:
    """Claim the first row of ``candidates`` that no concurrent writer takes first.

    Parameters
    ----------
    catalog : Catalog
        The catalog.
    candidates : Select
        Selects ORM rows in claim order (the first is tried).
    guard : callable
        The conditions that must still hold for the row (what the reader saw), e.g.
        its state and lease owner; they go into the ``UPDATE``'s ``WHERE``.
    values : callable
        The claim's new column values for the row.
    won : callable
        Called in the same transaction with the claimed row; its return value is the
        claim's result (``None`` means "claimed, but nothing to hand out": try again).
    attempts : int
        Lost races tolerated before giving up for now.
    """
    for _ in range(attempts):
        with catalog.session() as s:
            row: _Row | None = s.scalars(candidates.limit(1)).first()
            if row is None:
                return None
            table: Any = type(row)
            changed = cast(
                CursorResult[Any],
                s.execute(
                    update(table)
                    .where(table.id == cast(Any, row).id, *guard(row))
                    .values(**values(row))
                    .execution_options(synchronize_session=False)
                ),
            ).rowcount
            if not changed:
                continue
            s.refresh(row)
            result = won(s, row)
            if result is not None:
                return result
    return None


class NamedLease:
    """A lease on ``name`` held by ``owner`` for ``ttl_s`` at a time.

    Parameters
    ----------
    catalog : Catalog
        The catalog (``leases`` table).
    name : str
        What the lease is for (``completion``).
    owner : str
        This holder (node name and process).
    ttl_s : float
        How long a grant lasts without renewal: the failover time.
    """

    def __init__(self, catalog: Catalog, name: str, owner: str, ttl_s: float) -> None:
        self.catalog = catalog
        self.name = name
        self.owner = owner
        self.ttl_s = ttl_s
        self.held = False

    def acquire(self, now: dt.datetime | None = None) -> bool:
        """Take or renew the lease; return whether this owner holds it now."""
        now = now or utcnow()
        expires = now + dt.timedelta(seconds=self.ttl_s)
        try:
            with self.catalog.session() as s:
                exists = s.scalar(select(Lease.name).where(Lease.name == self.name))
                if exists is None:
                    s.execute(
                        insert(Lease).values(
                            name=self.name, owner=self.owner, expires_at=expires, acquired_at=now
                        )
                    )
                    got = True
                else:
                    mine = Lease.owner == self.owner
                    free = Lease.expires_at < now
                    changed = cast(
                        CursorResult[Any],
                        s.execute(
                            update(Lease)
                            .where(Lease.name == self.name, or_(mine, free))
                            .values(owner=self.owner, expires_at=expires)
                        ),
                    ).rowcount
                    got = bool(changed)
                    if got and not self.held:
                        s.execute(
                            update(Lease).where(Lease.name == self.name).values(acquired_at=now)
                        )
        except IntegrityError:  # another node inserted the row first
            got = False
        if got != self.held:
            logger.info(
                "lease acquired" if got else "lease lost",
                extra={"lease": self.name, "owner": self.owner},
            )
        self.held = got
        return got

    def release(self) -> None:
        """Give the lease up (clean shutdown: another node takes over at once)."""
        if not self.held:
            return
        with self.catalog.session() as s:
            s.execute(
                update(Lease)
                .where(Lease.name == self.name, Lease.owner == self.owner)
                .values(expires_at=utcnow() - dt.timedelta(seconds=1))
            )
        self.held = False

    def holder(self) -> tuple[str, dt.datetime] | None:
        """Who holds the lease and until when (for status pages)."""
        with self.catalog.session() as s:
            row = s.get(Lease, self.name)
            return None if row is None else (row.owner, row.expires_at)
