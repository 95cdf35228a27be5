"""The catalog: what arrived, in which state each study is, and the job queue's rows.

SQLAlchemy 2 over SQLite (WAL, ``synchronous=FULL`` so a commit is on disk before a
C-STORE is acknowledged) or PostgreSQL, with the same code. Every method runs in its
own short transaction and is safe to call from many threads.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ihgamp_core.analysis.contract import SeriesKind, series_kind

from ..config.base import redact_url
from ..errors import (
    CatalogError,
    CatalogUnavailableError,
    InstanceConflictError,
    SenderConflictError,
    UidConflictError,
)
from .identity import PatientIdentity
from .lifecycle import ALLOWED_TRANSITIONS, move
from .migrations import SchemaStatus, ensure_current
from .records import (
    InstanceRecord,
    RecordOutcome,
    SeriesFiles,
    SeriesSnapshot,
    StudySnapshot,
    utcnow,
)
from .schema import AnalysisResult, Association, Instance, Series, Study, StudyState

_T = TypeVar("_T")

__all__ = [
    "ALLOWED_TRANSITIONS",
    "Catalog",
    "CatalogStore",
    "InstanceRecord",
    "RecordOutcome",
    "SeriesFiles",
    "SeriesSnapshot",
    "StudySnapshot",
    "catalog_unavailable",
    "utcnow",
]

logger = logging.getLogger(__name__)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Catalog:
    """Access to the catalog database.

    Parameters
    ----------
    url : str
        ``sqlite:///PATH`` or ``postgresql+psycopg://USER@HOST:PORT/DB``.
    create_schema : bool
        Create the schema in an empty database (the default). A database behind this
        code is refused either way: ``ihgamp db upgrade`` migrates it.

    Raises
    ------
    CatalogError
        If the database cannot be opened, is not migrated, or is newer than this code.
    """

    def __init__(self, url: str, create_schema: bool = True) -> None:
        self.url = url
        try:
            if url.startswith("sqlite:///"):
                db_path = Path(url[len("sqlite:///") :])
                db_path.parent.mkdir(parents=True, exist_ok=True)
                self.engine: Engine = create_engine(
                    url,
                    connect_args={"check_same_thread": False, "timeout": 30},
                    hide_parameters=True,
                )
                event.listen(self.engine, "connect", _sqlite_pragmas)
            else:
                self.engine = create_engine(
                    url, pool_pre_ping=True, pool_size=10, max_overflow=20, hide_parameters=True
                )
            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
            self.schema: SchemaStatus = ensure_current(self.engine, create_schema)
        except OperationalError as exc:
            raise CatalogError(f"cannot open the catalog at {redact_url(url)}: {exc.orig}") from exc

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()

    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """Yield a session in a transaction, committed on success.

        Parameters
        ----------
        write : bool
            The transaction reads, then writes what it read (on SQLite: take the write
            lock at the start; on PostgreSQL the unique constraints arbitrate and the
            loser retries).
        """
        with self._sessions() as session, session.begin():
            if write and self.engine.dialect.name == "sqlite":
                # The driver starts a deferred transaction only at the first write, so
                # the reads before it could be stale; take the write lock first instead
                # (waiting up to busy_timeout for other writers).
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session

    # -- associations ---------------------------------------------------------------

    # -- receiving ----------------------------------------------------------------

    def current_instance(self, sop_instance_uid: str) -> tuple[int, str, str] | None:
        """Return ``(version, sha256, path)`` of the current stored version, if any."""
        with self.session() as s:
            row = s.scalars(
                select(Instance)
                .where(Instance.sop_instance_uid == sop_instance_uid, Instance.current.is_(True))
                .order_by(Instance.version.desc())
            ).first()
            return None if row is None else (row.version, row.sha256, row.path)

    def has_instance_path(self, path: str) -> bool:
        """Return whether an instance row names ``path`` (spool reconciliation)."""
        with self.session() as s:
            return s.scalars(select(Instance.id).where(Instance.path == path)).first() is not None

    def record_instance(
        self,
        rec: InstanceRecord,
        assoc_id: int | None,
        now: dt.datetime | None = None,
        opener_only: bool = False,
    ) -> RecordOutcome:
        """Record a stored file in one transaction; create or update its study and series.

        The transaction decides: same content as the current version of the SOP
        Instance UID is a duplicate; other content in the same series is a new version;
        the UID (or the series) under another study or series is a conflict; an instance
        of another patient than the study's first instances is refused (and, with
        ``opener_only``, one from another sender than the study's first once the study
        has a result), with nothing in the study changed. A new whole-slide instance for
        a study that was already complete (or scored) reopens it: it goes back to
        ``receiving`` and will be scored again. Concurrent writers of the same study,
        series or instance (several associations, several receivers) are serialised by
        the unique constraints: the loser retries and sees the winner.

        Raises
        ------
        InstanceConflictError, UidConflictError
            The SOP Instance UID or the series belongs to another study (or series).
        PatientConflictError, SenderConflictError
            The instance may not join its study.
        CatalogError
            If the database refuses the write.
        """
        now = now or utcnow()
        return self._retrying(lambda: self._record_instance(rec, assoc_id, now, opener_only))

    def _retrying(self, write: Callable[[], _T], attempts: int = 12) -> _T:
        """Run a write transaction, retrying when a concurrent writer won a race."""
        for attempt in range(attempts):
            try:
                return write()
            except IntegrityError as exc:
                if attempt == attempts - 1:
                    raise CatalogError(f"catalog refused the write: {_db_reason(exc)}") from None
            except OperationalError as exc:
                if attempt == attempts - 1 or not _is_busy(exc):
                    raise CatalogUnavailableError(
                        f"catalog unavailable: {_db_reason(exc)}"
                    ) from None
            except DBAPIError as exc:
                raise CatalogError(f"catalog refused the write: {_db_reason(exc)}") from None
            delay = min(0.5, 0.01 * 2**attempt)
            time.sleep(random.uniform(delay / 2, delay))  # noqa: S311 - jitter
        raise AssertionError("unreachable")  # pragma: no cover

    def _record_instance(
        self, rec: InstanceRecord, assoc_id: int | None, now: dt.datetime, opener_only: bool
    ) -> RecordOutcome:
        with self.session(write=True) as s:
            existing = s.execute(
                select(Instance, Series.series_uid, Study.study_uid)
                .join(Series, Series.id == Instance.series_id)
                .join(Study, Study.id == Series.study_id)
                .where(
                    Instance.sop_instance_uid == rec.sop_instance_uid,
                    Instance.current.is_(True),
                )
            ).first()
            if existing is not None:
                current, series_uid, study_uid = existing
                if (study_uid, series_uid) != (rec.study_uid, rec.series_uid):
                    raise InstanceConflictError(
                        f"SOP Instance UID {rec.sop_instance_uid} is already stored in "
                        "another study or series; refused"
                    )
                if current.sha256 == rec.sha256:
                    return RecordOutcome(duplicate=True, version=current.version, reopened=False)
            # Locked (PostgreSQL; SQLite holds its write lock already): two receivers adding
            # to one study compare and complete its patient identity one after the other.
            study = s.scalars(
                select(Study).where(Study.study_uid == rec.study_uid).with_for_update()
            ).first()
            if study is None:
                study = Study(
                    study_uid=rec.study_uid,
                    accession_number=rec.accession_number,
                    state=StudyState.RECEIVING,
                    first_received_at=now,
                    last_received_at=now,
                )
                s.add(study)
                s.flush()
            _admit(s, study, rec, opener_only)
            series = s.scalars(select(Series).where(Series.series_uid == rec.series_uid)).first()
            if series is None:
                series = Series(
                    study_id=study.id,
                    series_uid=rec.series_uid,
                    modality=rec.modality,
                    sop_class_uid=rec.sop_class_uid,
                    instance_count=0,
                    first_received_at=now,
                    last_received_at=now,
                )
                s.add(series)
                s.flush()
            elif series.study_id != study.id:
                raise UidConflictError(
                    f"series {rec.series_uid} already belongs to another study; refused"
                )
            version = 1
            if existing is not None:
                current = existing[0]
                current.current = False
                version = current.version + 1
            else:
                latest = s.scalar(
                    select(func.max(Instance.version)).where(
                        Instance.sop_instance_uid == rec.sop_instance_uid
                    )
                )
                version = (latest or 0) + 1
                series.instance_count += 1
            s.add(
                Instance(
                    series_id=series.id,
                    sop_instance_uid=rec.sop_instance_uid,
                    sop_class_uid=rec.sop_class_uid,
                    transfer_syntax_uid=rec.transfer_syntax_uid,
                    image_flavor=rec.image_flavor,
                    pixel_spacing_um=rec.pixel_spacing_um,
                    version=version,
                    current=True,
                    path=rec.path,
                    size=rec.size,
                    sha256=rec.sha256,
                    received_at=now,
                    association_id=assoc_id,
                )
            )
            if rec.image_flavor == "VOLUME" and rec.pixel_spacing_um is not None:
                finest = series.finest_volume_mpp
                series.finest_volume_mpp = (
                    rec.pixel_spacing_um if finest is None else min(finest, rec.pixel_spacing_um)
                )
            series.last_received_at = now
            study.last_received_at = now
            if rec.accession_number and not study.accession_number:
                study.accession_number = rec.accession_number
            reopened = False
            kind = series_kind(rec.sop_class_uid)
            if kind is not SeriesKind.OTHER and study.state != StudyState.RECEIVING:
                reopened = True  # a new input (a slide, a volume, a segmentation)
                what = "whole-slide" if kind is SeriesKind.SLIDE else str(kind)
                move(study, StudyState.RECEIVING, f"reopened: new {what} instance", now)
            if assoc_id is not None:
                s.execute(
                    update(Association)
                    .where(Association.id == assoc_id)
                    .values(
                        instances_received=Association.instances_received + 1,
                        bytes_received=Association.bytes_received + rec.size,
                    )
                )
            return RecordOutcome(duplicate=False, version=version, reopened=reopened)

    # -- studies ------------------------------------------------------------------

    def _snapshot(self, study: Study, series: Sequence[Series]) -> StudySnapshot:
        return StudySnapshot(
            study_uid=study.study_uid,
            accession_number=study.accession_number,
            state=study.state,
            state_reason=study.state_reason,
            forced=study.forced,
            first_received_at=study.first_received_at,
            last_received_at=study.last_received_at,
            completed_at=study.completed_at,
            scored_at=study.scored_at,
            series=tuple(
                SeriesSnapshot(
                    series_uid=x.series_uid,
                    sop_class_uid=x.sop_class_uid,
                    instance_count=x.instance_count,
                    finest_volume_mpp=x.finest_volume_mpp,
                    last_received_at=x.last_received_at,
                )
                for x in series
            ),
            hold_reason=study.hold_reason,
            review_reason=study.review_reason,
        )

    def studies(self, states: Sequence[str] | None = None, limit: int = 500) -> list[StudySnapshot]:
        """Return studies (newest first), optionally only in ``states``."""
        with self.session() as s:
            q = select(Study).order_by(Study.last_received_at.desc()).limit(limit)
            if states:
                q = q.where(Study.state.in_(list(states)))
            rows = list(s.scalars(q))
            series = {
                row.id: list(s.scalars(select(Series).where(Series.study_id == row.id)))
                for row in rows
            }
            return [self._snapshot(row, series[row.id]) for row in rows]

    def study(self, study_uid: str) -> StudySnapshot | None:
        """Return one study by UID."""
        with self.session() as s:
            row = s.scalars(select(Study).where(Study.study_uid == study_uid)).first()
            if row is None:
                return None
            series = list(s.scalars(select(Series).where(Series.study_id == row.id)))
            return self._snapshot(row, series)

    def transition(
        self,
        study_uid: str,
        to_state: StudyState,
        reason: str | None = None,
        expect: Sequence[StudyState] | None = None,
        forced: bool | None = None,
    ) -> bool:
        """Move a study to ``to_state``.

        Parameters
        ----------
        study_uid : str
            The study.
        to_state : StudyState
            Target state.
        reason : str, optional
            Why (shown in ``ihgamp status``).
        expect : sequence of StudyState, optional
            Only move from these states; otherwise return False without change.
        forced : bool, optional
            Record that completion was forced.

        Raises
        ------
        CatalogError
            If the transition is not allowed by the state machine or the study is unknown.
        """
        with self.session() as s:
            study = s.scalars(select(Study).where(Study.study_uid == study_uid)).first()
            if study is None:
                raise CatalogError(f"no study {study_uid} in the catalog")
            if expect is not None and study.state not in expect:
                return False
            move(study, to_state, reason, utcnow(), forced)
            return True

    def hold(self, study_uid: str, reason: str, accession_number: str | None = None) -> None:
        """Keep a study from completing (e.g. while it is being retrieved).

        Creates the study row when it does not exist yet, so instances arriving later
        join a held study.
        """
        now = utcnow()
        try:
            with self.session() as s:
                study = s.scalars(select(Study).where(Study.study_uid == study_uid)).first()
                if study is None:
                    study = Study(
                        study_uid=study_uid,
                        accession_number=accession_number,
                        state=StudyState.RECEIVING,
                        first_received_at=now,
                        last_received_at=now,
                    )
                    s.add(study)
                study.hold_reason = reason[:2000]
        except IntegrityError:  # created concurrently by an arriving instance
            self.hold(study_uid, reason, accession_number)

    def release(self, study_uid: str) -> None:
        """Let a held study complete by the usual rules again."""
        with self.session() as s:
            s.execute(update(Study).where(Study.study_uid == study_uid).values(hold_reason=None))

    def series_files(self, study_uid: str) -> dict[str, SeriesFiles]:
        """Return each series of a study (any SOP class) with its current instance files."""
        with self.session() as s:
            rows = s.execute(
                select(Series.series_uid, Series.sop_class_uid, Series.modality, Instance.path)
                .join(Instance, Instance.series_id == Series.id)
                .join(Study, Study.id == Series.study_id)
                .where(Study.study_uid == study_uid, Instance.current.is_(True))
                .order_by(Series.series_uid, Instance.path)
            ).all()
        files: dict[str, SeriesFiles] = {}
        for series_uid, sop_class, modality, path in rows:
            files.setdefault(series_uid, SeriesFiles(sop_class, modality, [])).paths.append(path)
        return files

    def instance_paths(self, study_uid: str) -> list[str]:
        """Return every current instance file of a study (any SOP class)."""
        with self.session() as s:
            return list(
                s.scalars(
                    select(Instance.path)
                    .join(Series, Series.id == Instance.series_id)
                    .join(Study, Study.id == Series.study_id)
                    .where(Study.study_uid == study_uid, Instance.current.is_(True))
                )
            )

    def counts(self) -> dict[str, int]:
        """Count studies per state."""
        with self.session() as s:
            rows = s.execute(select(Study.state, func.count()).group_by(Study.state)).all()
        return {str(state): int(n) for state, n in rows}


class CatalogStore:
    """Rows of one concern in the catalog (one store per table group, one writer each).

    Parameters
    ----------
    catalog : Catalog
        The catalog.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog


def _admit(s: Session, study: Study, rec: InstanceRecord, opener_only: bool) -> None:
    """The rules an instance must pass to join ``study`` (nothing else is written before).

    One patient per study (:class:`~.identity.PatientIdentity`); optionally, once the study
    has a result, only its first sender adds to it. The first instance sets both.
    """
    if rec.patient is not None:
        if study.patient_identity is None:
            study.patient_identity = rec.patient.to_text()
        else:
            merged = PatientIdentity.from_text(study.patient_identity).check(rec.patient)
            if merged.to_text() != study.patient_identity:
                study.patient_identity = merged.to_text()
    if (
        opener_only
        and study.opened_by is not None
        and rec.source != study.opened_by
        and s.scalar(select(AnalysisResult.id).where(AnalysisResult.study_id == study.id).limit(1))
        is not None
    ):
        raise SenderConflictError(
            f"study was scored; only its first sender ({study.opened_by}) may add to it"
        )
    if study.opened_by is None and rec.source:
        study.opened_by = rec.source[:80]


def _db_reason(exc: DBAPIError) -> str:
    """The database's own message, first line only (never the statement's parameters)."""
    text = str(exc.orig) if exc.orig is not None else type(exc).__name__
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__


def catalog_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached now.

    Down, restarting, a dropped connection: the same call may succeed later, a reason to
    back off and try again rather than to give up on the work.
    """
    if isinstance(exc, CatalogUnavailableError):
        return True
    if isinstance(exc, DBAPIError):
        return isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated
    return False


def _is_busy(exc: OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "locked" in text or "busy" in text or "deadlock" in text or "serializ" in text
