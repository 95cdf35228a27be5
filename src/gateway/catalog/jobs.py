"""Job rows: enqueue, claim with a lease, renew, finish, retry with backoff.

Claims are conditional updates (``UPDATE ... WHERE state = <seen state>``), so two
workers never both win the same job, on SQLite or PostgreSQL. A job whose worker died
(lease expired) is claimed again and the lost attempt counts; after ``max_attempts``
the job and its study fail with the last error visible in ``ihgamp status``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.orm import Session

from ..errors import CatalogError
from .catalog import Catalog, utcnow
from .schema import Job, JobState, Study, StudyState

__all__ = ["ClaimedJob", "JobStore", "JobView"]


def _rowcount(result: Any) -> int:
    """Rows changed by an UPDATE (a CursorResult's rowcount)."""
    return int(cast(CursorResult[Any], result).rowcount)


@dataclass(frozen=True)
class ClaimedJob:
    """A job a worker holds the lease of."""

    job_id: int
    study_uid: str
    kind: str
    attempt: int
    max_attempts: int


@dataclass(frozen=True)
class JobView:
    """A job row for status listings."""

    job_id: int
    study_uid: str
    kind: str
    state: str
    attempts: int
    max_attempts: int
    last_error: str | None
    next_attempt_at: dt.datetime
    updated_at: dt.datetime
    created_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class JobStore:
    """The durable queue's rows in the catalog.

    Parameters
    ----------
    catalog : Catalog
        The catalog holding the ``jobs`` table.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def enqueue(self, study_uid: str, max_attempts: int, reason: str = "complete") -> int:
        """Queue a scoring job for a study and move the study to ``queued``.

        An existing queued or running job for the study is reused (no duplicates).

        Raises
        ------
        CatalogError
            If the study is unknown or cannot be queued from its state.
        """
        with self.catalog.session() as s:
            study = s.scalars(select(Study).where(Study.study_uid == study_uid)).first()
            if study is None:
                raise CatalogError(f"no study {study_uid} in the catalog")
            active = s.scalars(
                select(Job).where(
                    Job.study_id == study.id, Job.state.in_([JobState.QUEUED, JobState.RUNNING])
                )
            ).first()
            if active is not None and active.state == JobState.QUEUED:
                return int(active.id)
            if study.state in (StudyState.RECEIVING,):
                raise CatalogError(
                    f"study {study_uid} is still receiving; wait or force completion"
                )
            job = Job(
                study_id=study.id,
                kind="score",
                state=JobState.QUEUED,
                max_attempts=max_attempts,
                next_attempt_at=utcnow(),
            )
            s.add(job)
            study.state = StudyState.QUEUED
            study.state_reason = reason
            s.flush()
            return int(job.id)

    def requeue(self, study_uid: str, max_attempts: int, reason: str = "rescore") -> int:
        """Queue a finished study for scoring again (operator: CLI or status page).

        Raises
        ------
        CatalogError
            If the study is unknown, still receiving, or being scored.
        """
        with self.catalog.session() as s:
            state = s.scalars(select(Study.state).where(Study.study_uid == study_uid)).first()
        if state is None:
            raise CatalogError(f"no study {study_uid} in the catalog")
        if state in (StudyState.RECEIVING, StudyState.SCORING):
            raise CatalogError(f"study {study_uid} is {state}; wait until it finishes")
        return self.enqueue(study_uid, max_attempts, reason)

    def claim(
        self, owner: str, lease_s: float, now: dt.datetime | None = None
    ) -> ClaimedJob | None:
        """Take the oldest due job (or one whose lease expired) and lease it to ``owner``."""
        now = now or utcnow()
        for _ in range(10):  # lost races are retried on the next candidate
            with self.catalog.session() as s:
                due = or_(
                    and_(Job.state == JobState.QUEUED, Job.next_attempt_at <= now),
                    and_(Job.state == JobState.RUNNING, Job.lease_expires_at < now),
                )
                job = s.scalars(select(Job).where(due).order_by(Job.id).limit(1)).first()
                if job is None:
                    return None
                seen_state, seen_owner = job.state, job.lease_owner
                attempts = job.attempts + 1
                if attempts > job.max_attempts:
                    won = _rowcount(
                        s.execute(
                            update(Job)
                            .where(Job.id == job.id, Job.state == seen_state)
                            .values(
                                state=JobState.FAILED,
                                finished_at=now,
                                lease_owner=None,
                                last_error=(job.last_error or "worker lost (lease expired)"),
                            )
                        )
                    )
                    if won:
                        self._fail_study(s, job.study_id, job.last_error or "worker lost")
                    continue
                won = _rowcount(
                    s.execute(
                        update(Job)
                        .where(
                            Job.id == job.id,
                            Job.state == seen_state,
                            Job.lease_owner.is_not_distinct_from(seen_owner),
                        )
                        .values(
                            state=JobState.RUNNING,
                            attempts=attempts,
                            lease_owner=owner,
                            lease_expires_at=now + dt.timedelta(seconds=lease_s),
                        )
                    )
                )
                if not won:
                    continue
                study = s.get(Study, job.study_id)
                assert study is not None  # noqa: S101 - foreign key guarantees it
                if study.state == StudyState.QUEUED:
                    study.state = StudyState.SCORING
                    study.state_reason = f"attempt {attempts} of {job.max_attempts}"
                return ClaimedJob(job.id, study.study_uid, job.kind, attempts, job.max_attempts)
        return None

    def renew(self, job_id: int, owner: str, lease_s: float) -> bool:
        """Extend the lease; False if the job is no longer ours."""
        with self.catalog.session() as s:
            return bool(
                _rowcount(
                    s.execute(
                        update(Job)
                        .where(
                            Job.id == job_id,
                            Job.lease_owner == owner,
                            Job.state == JobState.RUNNING,
                        )
                        .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_s))
                    )
                )
            )

    def finish(self, job_id: int, owner: str) -> bool:
        """Mark the job done and its study scored (unless it was reopened meanwhile)."""
        now = utcnow()
        with self.catalog.session() as s:
            job = s.get(Job, job_id)
            if job is None or job.lease_owner != owner or job.state != JobState.RUNNING:
                return False
            job.state = JobState.DONE
            job.finished_at = now
            job.lease_owner = None
            study = s.get(Study, job.study_id)
            if study is not None and study.state == StudyState.SCORING:
                study.state = StudyState.SCORED
                study.state_reason = None
            return True

    def fail(
        self,
        job_id: int,
        owner: str,
        error: str,
        backoff_s: float,
        backoff_max_s: float,
        permanent: bool = False,
    ) -> str:
        """Record a failed attempt: retry later with exponential backoff, or give up.

        Returns
        -------
        str
            ``"retry"`` or ``"failed"``.
        """
        now = utcnow()
        with self.catalog.session() as s:
            job = s.get(Job, job_id)
            if job is None or job.lease_owner != owner:
                return "lost"
            job.last_error = error[:2000]
            job.lease_owner = None
            study = s.get(Study, job.study_id)
            if permanent or job.attempts >= job.max_attempts:
                job.state = JobState.FAILED
                job.finished_at = now
                self._fail_study(s, job.study_id, error)
                return "failed"
            delay = min(backoff_max_s, backoff_s * 2 ** (job.attempts - 1))
            job.state = JobState.QUEUED
            job.next_attempt_at = now + dt.timedelta(seconds=delay)
            if study is not None and study.state == StudyState.SCORING:
                study.state = StudyState.QUEUED
                study.state_reason = f"retry in {delay:.0f} s after: {error[:200]}"
            return "retry"

    @staticmethod
    def _fail_study(s: Session, study_id: int, error: str) -> None:
        study = s.get(Study, study_id)
        if study is not None and study.state in (StudyState.SCORING, StudyState.QUEUED):
            study.state = StudyState.FAILED
            study.state_reason = error[:2000]

    def jobs(
        self, limit: int = 200, study_uid: str | None = None, states: list[str] | None = None
    ) -> list[JobView]:
        """Most recent jobs (of one study, in some states)."""
        with self.catalog.session() as s:
            q = (
                select(Job, Study.study_uid)
                .join(Study, Study.id == Job.study_id)
                .order_by(Job.id.desc())
                .limit(limit)
            )
            if study_uid is not None:
                q = q.where(Study.study_uid == study_uid)
            if states:
                q = q.where(Job.state.in_(states))
            rows = s.execute(q).all()
            return [
                JobView(
                    j.id,
                    uid,
                    j.kind,
                    j.state,
                    j.attempts,
                    j.max_attempts,
                    j.last_error,
                    j.next_attempt_at,
                    j.updated_at,
                    j.created_at,
                    j.finished_at,
                )
                for j, uid in rows
            ]
