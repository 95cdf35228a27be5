"""FHIR R4 search parameter values as the specification defines them: tokens, dates, paging.

Parsing only: the routes (:mod:`.fhir`) say which parameters a resource type takes, the
catalog (:mod:`gateway.catalog.observations`) turns the parsed values into a query.

* token (``system|code``, ``|code``, ``system|``, ``code``); a comma separates values
  that are OR-ed;
* date with a prefix (``eq ne lt le gt ge sa eb``; no prefix is ``eq``) and the
  precision written (``2026``, ``2026-03``, ``2026-03-14``, ``2026-03-14T10:00:00+01:00``):
  a value stands for the interval of its precision; date-only values are UTC days;
* ``_count`` (0: the total only) and ``_offset`` (the paging cursor of ``next`` links).

A malformed value is a :class:`~.fhir.FhirError` ``400`` naming the parameter.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from enum import StrEnum

from ..catalog.observations import DateBound, Token

__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "MAX_OFFSET",
    "DatePrefix",
    "Page",
    "SearchValueError",
    "date_bounds",
    "page",
    "tokens",
]

#: The most entries one page holds (a larger ``_count`` is lowered to it).
MAX_COUNT = 500
DEFAULT_COUNT = 100
#: The deepest ``_offset`` (a larger one is refused; page with narrower criteria).
MAX_OFFSET = 1_000_000
_DATE_RE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(?P<tz>Z|[+-]\d{2}:\d{2}))?)?)?$"
)


class SearchValueError(ValueError):
    """A search parameter's value does not follow the FHIR syntax of its type."""


class DatePrefix(StrEnum):
    """FHIR date comparators (``ap``, approximately, is not supported)."""

    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    SA = "sa"
    EB = "eb"


@dataclass(frozen=True)
class Page:
    """Which slice of the matches to answer: ``count`` entries after ``offset``."""

    offset: int
    count: int


def tokens(name: str, raw: str) -> tuple[Token, ...]:
    """The OR-ed tokens of one parameter (``a|b,c|d``; a backslash-escaped comma is literal).

    Raises
    ------
    SearchValueError
        If a value is empty.
    """
    parts = [p.replace("\\,", ",") for p in re.split(r"(?<!\\),", raw)]
    out = []
    for part in parts:
        system, bar, value = part.partition("|") if "|" in part else ("", "", part)
        if not system and not value:
            raise SearchValueError(f"{name}: an empty value in {raw[:60]!r}")
        out.append(Token(system or None, value or None, no_system=bool(bar) and not system))
    return tuple(out)


def date_bounds(name: str, raw: str) -> DateBound:
    """One date criterion: its prefix and the half-open interval its value stands for.

    Raises
    ------
    SearchValueError
        If the prefix or the date is malformed, or the prefix is ``ap``.
    """
    prefix = DatePrefix.EQ
    text = raw
    if len(raw) >= 2 and raw[:2].isalpha():
        try:
            prefix = DatePrefix(raw[:2])
        except ValueError:
            raise SearchValueError(
                f"{name}: prefix {raw[:2]!r} is not one of eq ne lt le gt ge sa eb"
            ) from None
        text = raw[2:]
    match = _DATE_RE.match(text)
    if match is None:
        raise SearchValueError(
            f"{name}: {text[:40]!r} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD "
            "or YYYY-MM-DDThh:mm:ss+zz:zz)"
        )
    try:
        start, end = _interval(match)
    except ValueError as exc:
        raise SearchValueError(f"{name}: {text[:40]!r}: {exc}") from None
    return DateBound(str(prefix), start, end)


def _interval(match: re.Match[str]) -> tuple[dt.datetime, dt.datetime]:
    """The UTC interval ``[start, end)`` a date of the given precision stands for."""
    year = int(match["year"])
    if match["month"] is None:
        return _utc(year, 1, 1), _utc(year + 1, 1, 1)
    month = int(match["month"])
    if match["day"] is None:
        start = _utc(year, month, 1)
        return start, _utc(year + month // 12, month % 12 + 1, 1)
    day = _utc(year, month, int(match["day"]))
    if match["time"] is None:
        return day, day + dt.timedelta(days=1)
    moment = dt.datetime.fromisoformat(f"{text_date(match)}T{match['time']}{_tz(match['tz'])}")
    moment = moment.astimezone(dt.UTC)
    precision = dt.timedelta(seconds=1 if match["time"].count(":") == 2 else 60)
    if "." in match["time"]:
        precision = dt.timedelta(microseconds=1)
    return moment, moment + precision


def text_date(match: re.Match[str]) -> str:
    """The ``YYYY-MM-DD`` part of a matched date-time."""
    return f"{match['year']}-{match['month']}-{match['day']}"


def _tz(text: str) -> str:
    return "+00:00" if text == "Z" else text


def _utc(year: int, month: int, day: int) -> dt.datetime:
    return dt.datetime(year, month, day, tzinfo=dt.UTC)


def page(raw_count: str | None, raw_offset: str | None) -> Page:
    """The page a search asks for: ``_count`` and ``_offset``.

    ``_count`` defaults to :data:`DEFAULT_COUNT` and is lowered to :data:`MAX_COUNT`; 0
    asks for the total only. ``_offset`` defaults to 0.

    Raises
    ------
    SearchValueError
        If either is not a non-negative integer, or the offset is beyond
        :data:`MAX_OFFSET`.
    """
    count = DEFAULT_COUNT if raw_count is None else _natural("_count", raw_count)
    offset = 0 if raw_offset is None else _natural("_offset", raw_offset)
    if offset > MAX_OFFSET:
        raise SearchValueError(f"_offset: at most {MAX_OFFSET}; narrow the search instead")
    return Page(offset, min(count, MAX_COUNT))


def _natural(name: str, raw: str) -> int:
    if not raw.isascii() or not raw.isdigit():
        raise SearchValueError(f"{name} must be a non-negative integer, not {raw[:20]!r}")
    return MAX_OFFSET + 1 if len(raw) > 9 else int(raw)
