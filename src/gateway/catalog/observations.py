"""The Observations the FHIR endpoint serves, and FHIR search over them.

:meth:`ObservationStore.put` is the one writer: besides the resource it keeps the columns
the searches use (the subject's identifier, the code, ``effectiveDateTime``, when the
row last changed) and one ``observation_identifiers`` row per ``Observation.identifier``
(an amended Observation keeps the identifier of the result it replaces, so it is found by
either). :meth:`ObservationStore.search` answers an :class:`ObservationQuery`: every
criterion given must match (AND), the values of one criterion are alternatives (OR),
newest first, with the total count.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Select, and_, delete, false, func, not_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from ..errors import CatalogError
from .catalog import CatalogStore, utcnow
from .schema import ObservationIdentifier, StoredObservation, Study

__all__ = [
    "DateBound",
    "ObservationQuery",
    "ObservationStore",
    "SearchPage",
    "Token",
    "page_of",
]

R = TypeVar("R")


@dataclass(frozen=True)
class Token:
    """One FHIR token value: ``system|value``, ``system|``, ``|value`` or ``value``.

    Parameters
    ----------
    system : str or None
        The system to match (None: any, unless ``no_system``).
    value : str or None
        The code or identifier value (None: any in ``system``).
    no_system : bool
        ``|value``: only values without a system.
    """

    system: str | None
    value: str | None
    no_system: bool = False

    def __post_init__(self) -> None:
        if self.system is None and self.value is None:
            raise ValueError("a token needs a system or a value")

    def matches(
        self, system_column: InstrumentedAttribute[str], value_column: InstrumentedAttribute[str]
    ) -> ColumnElement[bool]:
        """The SQL condition of this token on a (system, value) column pair."""
        if self.no_system:
            return false()  # every identifier and code here has a system
        conditions = []
        if self.system is not None:
            conditions.append(system_column == self.system)
        if self.value is not None:
            conditions.append(value_column == self.value)
        return and_(*conditions)


@dataclass(frozen=True)
class DateBound:
    """One FHIR date criterion: a prefix and the interval ``[start, end)`` of its value.

    A point in time ``t`` (``effectiveDateTime``, ``meta.lastUpdated``) matches ``eq``
    when ``start <= t < end``, ``ne`` when not, ``lt``/``eb`` when ``t < start``,
    ``le`` when ``t < end``, ``gt``/``sa`` when ``t >= end``, ``ge`` when ``t >= start``.
    """

    prefix: str
    start: dt.datetime
    end: dt.datetime

    def __post_init__(self) -> None:
        if self.prefix not in ("eq", "ne", "lt", "le", "gt", "ge", "sa", "eb"):
            raise ValueError(f"unknown date prefix {self.prefix!r}")
        if not self.start < self.end:
            raise ValueError("a date interval must not be empty")

    def matches(self, column: InstrumentedAttribute[dt.datetime | None]) -> ColumnElement[bool]:
        """The SQL condition of this criterion on a timestamp column."""
        within = and_(column >= self.start, column < self.end)
        return {
            "eq": within,
            "ne": and_(column.is_not(None), not_(within)),
            "lt": column < self.start,
            "eb": column < self.start,
            "le": column < self.end,
            "gt": column >= self.end,
            "sa": column >= self.end,
            "ge": column >= self.start,
        }[self.prefix]


@dataclass(frozen=True)
class ObservationQuery:
    """An Observation search: each non-empty criterion must match.

    Parameters
    ----------
    ids : tuple of str
        ``_id`` values (any of them).
    subjects : tuple of Token
        The subject's identifier (``subject:identifier`` / ``patient:identifier``).
    codes : tuple of Token
        ``code`` (any of them).
    identifiers : tuple of Token
        ``identifier`` (any of them).
    effective : tuple of DateBound
        ``date`` on ``effectiveDateTime`` (all of them).
    last_updated : tuple of DateBound
        ``_lastUpdated`` (all of them).
    """

    ids: tuple[str, ...] = ()
    subjects: tuple[Token, ...] = ()
    codes: tuple[Token, ...] = ()
    identifiers: tuple[Token, ...] = ()
    effective: tuple[DateBound, ...] = ()
    last_updated: tuple[DateBound, ...] = ()

    def statement(self) -> Select[StoredObservation]:
        """The matching rows, unordered and unpaged."""
        o = StoredObservation
        q = select(o)
        if self.ids:
            q = q.where(o.id.in_(self.ids))
        if self.subjects:
            q = q.where(or_(*(t.matches(o.patient_system, o.patient_value) for t in self.subjects)))
        if self.codes:
            q = q.where(or_(*(t.matches(o.code_system, o.code) for t in self.codes)))
        if self.identifiers:
            i = ObservationIdentifier
            matching = select(i.observation_id).where(
                or_(*(t.matches(i.system, i.value) for t in self.identifiers))
            )
            q = q.where(o.id.in_(matching))
        for bound in self.effective:
            q = q.where(bound.matches(o.effective_at))
        for bound in self.last_updated:
            q = q.where(bound.matches(o.updated_at))
        return q


@dataclass(frozen=True)
class SearchPage:
    """One page of a search: the total number of matches and this page's resources."""

    total: int
    resources: list[dict[str, Any]]


class ObservationStore(CatalogStore):
    """FHIR Observations kept for the gateway's read-only FHIR endpoint."""

    def put(self, study_uid: str, resource: dict[str, Any], code: tuple[str, str]) -> None:
        """Store (or replace) one Observation with the columns its searches use.

        Parameters
        ----------
        study_uid : str
            Its study.
        resource : dict
            The Observation (``id``, ``subject.identifier``, ``identifier``,
            ``effectiveDateTime``).
        code : tuple of str
            ``(system, code)`` of its standard code.

        Raises
        ------
        CatalogError
            If the study is not in the catalog.
        """
        subject = resource["subject"]["identifier"]
        effective = resource.get("effectiveDateTime")
        identifiers = {
            (str(i["system"]), str(i["value"])) for i in resource.get("identifier") or ()
        }
        with self.catalog.session() as s:
            study = s.scalars(select(Study).where(Study.study_uid == study_uid)).first()
            if study is None:
                raise CatalogError(f"no study {study_uid} in the catalog")
            row = s.get(StoredObservation, resource["id"])
            if row is None:
                row = StoredObservation(id=resource["id"], study_id=study.id)
                s.add(row)
            row.patient_system = subject["system"]
            row.patient_value = subject["value"]
            row.code_system, row.code = code
            row.effective_at = None if effective is None else _instant(effective)
            row.updated_at = utcnow()
            row.resource = json.dumps(resource)
            s.flush()
            s.execute(
                delete(ObservationIdentifier).where(ObservationIdentifier.observation_id == row.id)
            )
            s.add_all(
                ObservationIdentifier(observation_id=row.id, system=system, value=value)
                for system, value in sorted(identifiers)
            )

    def get(self, observation_id: str) -> dict[str, Any] | None:
        """One Observation by id, with ``meta.lastUpdated``."""
        with self.catalog.session() as s:
            row = s.get(StoredObservation, observation_id)
            return None if row is None else _served(row)

    def search(self, query: ObservationQuery, offset: int = 0, limit: int = 100) -> SearchPage:
        """The matches of ``query``, newest first.

        Returns their total and ``limit`` of them after ``offset`` (``limit`` 0: the
        total only).
        """
        order = (StoredObservation.created_at.desc(), StoredObservation.id.asc())
        with self.catalog.session() as s:
            return page_of(s, query.statement(), order, offset, limit, _served)


def page_of(
    s: Session,
    statement: Select[R],
    order: Sequence[ColumnElement[Any]],
    offset: int,
    limit: int,
    served: Callable[[R], dict[str, Any]],
) -> SearchPage:
    """One page of a search's rows as resources, with the total number of matches."""
    total = s.scalar(select(func.count()).select_from(statement.subquery())) or 0
    if limit == 0 or offset >= total:
        return SearchPage(total, [])
    rows = s.scalars(statement.order_by(*order).offset(offset).limit(limit))
    return SearchPage(total, [served(r) for r in rows])


def _instant(text: str) -> dt.datetime:
    """An ``effectiveDateTime`` as an aware UTC instant (a date alone: its UTC midnight)."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _served(row: StoredObservation) -> dict[str, Any]:
    """The stored resource with ``meta.lastUpdated`` from its row."""
    resource = cast(dict[str, Any], json.loads(row.resource))
    if row.updated_at is not None:
        meta = resource.setdefault("meta", {})
        meta["lastUpdated"] = row.updated_at.isoformat(timespec="seconds")
    return resource
