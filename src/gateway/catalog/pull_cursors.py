"""Auto-pull cursors: per PACS, when its last query succeeded and the last error since."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.dialects import postgresql, sqlite

from .catalog import CatalogStore
from .records import utcnow
from .schema import PullCursor

__all__ = ["PullCursorStore"]


class PullCursorStore(CatalogStore):
    """The ``pull_cursors`` rows (one writer: the poller; operators read them)."""

    def get(self, pacs: str) -> tuple[dt.datetime, str | None] | None:
        """Last successful auto-pull query time of a PACS, and the last error since."""
        with self.catalog.session() as s:
            row = s.get(PullCursor, pacs)
            return None if row is None else (row.last_success_at, row.last_error)

    def set(
        self, pacs: str, success_at: dt.datetime | None = None, error: str | None = None
    ) -> None:
        """Advance the cursor after a successful pass, or record a failed attempt."""
        now = utcnow()
        with self.catalog.session() as s:
            # Create the row race-free (a poller and an operator may write at once).
            values = {"pacs": pacs, "last_success_at": success_at or now, "last_attempt_at": now}
            if s.get_bind().dialect.name == "postgresql":
                s.execute(
                    postgresql.insert(PullCursor)
                    .values(**values)
                    .on_conflict_do_nothing(index_elements=["pacs"])
                )
            else:
                s.execute(
                    sqlite.insert(PullCursor).values(**values).on_conflict_do_nothing(["pacs"])
                )
            row = s.get(PullCursor, pacs, with_for_update=True, populate_existing=True)
            assert row is not None  # noqa: S101  (inserted or present above)
            if success_at is not None:
                row.last_success_at = success_at
                row.last_error = None
            else:
                row.last_error = (error or "")[:2000]
            row.last_attempt_at = now
