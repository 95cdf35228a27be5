"""Job rows: enqueue, claim with a lease, renew, finish, retry with backoff.

The job row is the truth about a job, whichever queue backend moves it: the in-process
workers poll these rows; with Celery a message carries only a job id and is the worker's
turn to run one due job, preferably that one (:meth:`JobStore.claim_job`), so a duplicate
or stale message is harmless.

Claims are fair (:meth:`JobStore.claim`): round-robin across studies (every study's
first waiting job before any study's second), then across senders (the AE or PACS that
opened the study), then oldest first; so one study of 300 slides, or a sender opening
300 studies, cannot starve the others. Claims go through
:func:`~gateway.catalog.leases.claim_first`, so two workers never both win a job. A
job whose worker died (lease expired) is claimed again and the lost attempt counts;
after ``max_attempts`` the job fails with the last error visible in ``ihgamp status``.
Study states change only through :func:`~gateway.catalog.lifecycle.move`.

One study may have several jobs: one per request of its routing decision
(``studies.routing``, one per analysis and, for HER2, per tissue block). The jobs one
queuing created share a ``batch``; the study is ``scoring`` while any runs, and when the
last of the batch ends it is ``scored``, or ``failed`` if any of them failed (the others'
results stay and are delivered).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from ..errors import CatalogError
from ..loops import doubling
from .catalog import CatalogStore, utcnow
from .leases import claim_first
from .lifecycle import move
from .schema import LEGACY_ANALYSIS, AttemptOutcome, Job, JobState, Study, StudyState

__all__ = ["ClaimedJob", "JobRequest", "JobStore", "JobView", "LEGACY_REQUEST"]

logger = logging.getLogger(__name__)

#: How a worker that lost its lease left its job (for ``ihgamp status``).
WORKER_LOST = "worker lost (lease expired)"


@dataclass(frozen=True)
class JobRequest:
    """What one job runs: an analysis on the slides of a routing request.

    ``request`` is :meth:`ihgamp_core.analysis.AnalysisRequest.to_dict`; ``None`` means
    every slide of the study with the legacy analysis (jobs from before routing, and
    studies queued without a routing decision).
    """

    job_key: str
    analysis: str
    request: dict[str, Any] | None = None


#: The legacy analysis on every slide of the study (the gateway before analyses existed).
LEGACY_REQUEST = JobRequest(LEGACY_ANALYSIS, LEGACY_ANALYSIS, None)


@dataclass(frozen=True)
class ClaimedJob:
    """A job a worker holds the lease of."""

    job_id: int
    study_uid: str
    kind: str
    attempt: int
    max_attempts: int
    took_over: bool = False  # the previous holder's lease had expired
    queued_s: float = 0.0  # how long it waited for a worker since it became due
    analysis: str = LEGACY_ANALYSIS
    job_key: str = LEGACY_ANALYSIS
    request: dict[str, Any] | None = None


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
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    analysis: str = LEGACY_ANALYSIS
    job_key: str = LEGACY_ANALYSIS


class JobStore(CatalogStore):
    """The durable queue's rows in the catalog."""

    def enqueue(self, study_uid: str, max_attempts: int, reason: str = "complete") -> int:
        """Queue a study's jobs (:meth:`enqueue_all`); return the first job's id."""
        return self.enqueue_all(study_uid, max_attempts, reason)[0]

    def enqueue_all(self, study_uid: str, max_attempts: int, reason: str = "complete") -> list[int]:
        """Queue one job per request of the study's routing decision; study -> ``queued``.

        Without a routing decision (``studies.routing`` empty) the study gets one legacy job
        on every slide (:data:`LEGACY_REQUEST`). An existing queued job of the same study
        and key is reused with the new request (no duplicates); a queued job of a key the
        decision no longer has is cancelled.

        Raises
        ------
        CatalogError
            If the study is unknown, cannot be queued from its state, or its routing
            decision has no request.
        """
        with self.catalog.session() as s:
            study = s.scalars(select(Study).where(Study.study_uid == study_uid)).first()
            if study is None:
                raise CatalogError(f"no study {study_uid} in the catalog")
            requests = _requests(study.routing)
            if not requests:
                raise CatalogError(f"study {study_uid}: its routing decision runs no analysis")
            queued = {
                j.job_key: j
                for j in s.scalars(
                    select(Job).where(Job.study_id == study.id, Job.state == JobState.QUEUED)
                )
            }
            wanted = {r.job_key: _dump(r.request) for r in requests}
            if {k: j.request for k, j in queued.items()} == wanted:  # queued already
                if study.state not in (StudyState.RECEIVING, StudyState.QUEUED):
                    # A study bound to live jobs is queued: they move it on (reopened and
                    # completed again while its jobs waited).
                    move(study, StudyState.QUEUED, reason, utcnow())
                return [int(queued[r.job_key].id) for r in requests]
            if study.state == StudyState.RECEIVING:
                raise CatalogError(
                    f"study {study_uid} is still receiving; wait or force completion"
                )
            now = utcnow()
            batch = uuid.uuid4().hex
            jobs: list[Job] = []
            for r in requests:
                request = wanted[r.job_key]
                job = queued.pop(r.job_key, None)
                if job is None:
                    job = Job(
                        study_id=study.id,
                        kind="score",
                        analysis=r.analysis,
                        job_key=r.job_key,
                        state=JobState.QUEUED,
                        max_attempts=max_attempts,
                        next_attempt_at=now,
                    )
                    s.add(job)
                job.request = request  # a reused job runs what the new routing asks
                job.batch = batch
                jobs.append(job)
            for stale in queued.values():  # asked for by an earlier routing only
                stale.state = JobState.CANCELLED
                stale.finished_at = now
                stale.last_error = "replaced by a new routing of the study"
            move(study, StudyState.QUEUED, reason, now)
            s.flush()
            return [int(j.id) for j in jobs]

    # -- claiming ---------------------------------------------------------------------

    @staticmethod
    def _due(now: dt.datetime) -> ColumnElement[bool]:
        return or_(
            and_(Job.state == JobState.QUEUED, Job.next_attempt_at <= now),
            and_(Job.state == JobState.RUNNING, Job.lease_expires_at < now),
        )

    @staticmethod
    def _fair(due: ColumnElement[bool], prefer: int | None = None) -> Select[Any]:
        """Due jobs in claim order (fairest first).

        The fewest waiting jobs ahead of them in their own study, then from their study's
        sender, then ``prefer``, then the oldest. Only jobs of a queued or scoring study
        are due: those of a study receiving again (reopened by a late instance) wait until
        it is routed and queued again.
        """
        ahead, ahead_study = aliased(Job), aliased(Study)
        waiting = ahead.state.in_([JobState.QUEUED, JobState.RUNNING])
        in_study = (
            select(func.count(ahead.id))
            .where(ahead.study_id == Job.study_id, ahead.id < Job.id, waiting)
            .scalar_subquery()
        )
        from_sender = (
            select(func.count(ahead.id))
            .join(ahead_study, ahead_study.id == ahead.study_id)
            .where(ahead_study.opened_by == Study.opened_by, ahead.id < Job.id, waiting)
            .scalar_subquery()
        )
        order: list[Any] = [in_study, from_sender]
        if prefer is not None:
            order.append(case((Job.id == prefer, 0), else_=1))
        # Only a queued or scoring study's jobs run: one receiving again (reopened) waits to
        # be routed anew; a failed or ignored one's waiting jobs are cancelled.
        live = Study.state.in_([StudyState.QUEUED, StudyState.SCORING])
        return (
            select(Job)
            .join(Study, Study.id == Job.study_id)
            .where(due, live)
            .order_by(*order, Job.id)
        )

    def claim(
        self,
        owner: str,
        lease_s: float,
        now: dt.datetime | None = None,
        prefer: int | None = None,
    ) -> ClaimedJob | None:
        """Take the fairest due job (or one whose lease expired) and lease it to ``owner``.

        Round-robin across studies, then senders, then oldest first (module docstring);
        among equals, ``prefer``.
        """
        now = now or utcnow()
        return self._claim(self._fair(self._due(now), prefer), owner, lease_s, now)

    def cancel_waiting(self, study_uid: str, reason: str, now: dt.datetime | None = None) -> int:
        """Cancel a study's queued jobs (its new routing runs nothing); return how many."""
        now = now or utcnow()
        with self.catalog.session() as s:
            study = s.scalars(select(Study).where(Study.study_uid == study_uid)).first()
            if study is None:
                return 0
            done = s.execute(
                update(Job)
                .where(Job.study_id == study.id, Job.state == JobState.QUEUED)
                .values(state=JobState.CANCELLED, finished_at=now, last_error=reason[:2000])
            )
            return int(getattr(done, "rowcount", 0) or 0)

    def release(self, job_id: int, owner: str, now: dt.datetime | None = None) -> bool:
        """Hand a running job back (clean shutdown): queued now, its attempt not counted.

        The study goes back to ``queued`` when none of its jobs runs any more. Returns
        False when ``owner`` no longer holds the job.
        """
        now = now or utcnow()
        with self.catalog.session(write=True) as s:
            released = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == JobState.RUNNING, Job.lease_owner == owner)
                .values(
                    state=JobState.QUEUED,
                    attempts=case((Job.attempts > 0, Job.attempts - 1), else_=0),
                    lease_owner=None,
                    lease_expires_at=None,
                    next_attempt_at=now,
                    published_at=None,  # the sweeper announces it again (broker backends)
                )
                .execution_options(synchronize_session=False)
            )
            if not getattr(released, "rowcount", 0):
                return False  # taken over meanwhile (its lease had expired): not ours
            job = s.get(Job, job_id)
            study = s.get(Study, job.study_id) if job is not None else None
            running = s.scalars(
                select(Job.id).where(
                    Job.study_id == (study.id if study else -1), Job.state == JobState.RUNNING
                )
            ).first()
            if study is not None and study.state == StudyState.SCORING and running is None:
                move(study, StudyState.QUEUED, "worker stopped; job handed back", now)
            return True

    def claim_job(
        self, job_id: int, owner: str, lease_s: float, now: dt.datetime | None = None
    ) -> ClaimedJob | None:
        """A broker message's turn: job ``job_id`` unless another study's job is due before it.

        A message is one turn to run a due job: the one it names when that is the
        fairest, else the fairest (whose own message, still queued, becomes the turn of
        the job passed over). None when nothing is due (a duplicate or stale message).
        """
        return self.claim(owner, lease_s, now, prefer=job_id)

    def _claim(
        self, candidates: Select[Any], owner: str, lease_s: float, now: dt.datetime
    ) -> ClaimedJob | None:
        seen: dict[int, tuple[str, str | None]] = {}

        def guard(job: Job) -> list[ColumnElement[bool]]:
            seen[job.id] = (job.state, job.lease_owner)
            return [Job.state == job.state, Job.lease_owner.is_not_distinct_from(job.lease_owner)]

        def values(job: Job) -> dict[str, object]:
            if job.attempts + 1 > job.max_attempts:  # its last attempt's worker died
                return {
                    "state": JobState.FAILED,
                    "finished_at": now,
                    "lease_owner": None,
                    "last_error": job.last_error or WORKER_LOST,
                }
            return {
                "state": JobState.RUNNING,
                "attempts": job.attempts + 1,
                "lease_owner": owner,
                "lease_expires_at": now + dt.timedelta(seconds=lease_s),
            }

        def won(s: Session, job: Job) -> ClaimedJob | None:
            study = s.get(Study, job.study_id)
            assert study is not None  # noqa: S101 - foreign key guarantees it
            took_over = seen[job.id][0] == JobState.RUNNING
            if job.state == JobState.FAILED:
                self._settle(s, study, job, now)
                logger.warning(
                    "job failed: its worker was lost on the last attempt",
                    extra={"job_id": job.id, "study_uid": study.study_uid},
                )
                return None
            if took_over:
                logger.warning(
                    "lease expired; job taken over",
                    extra={"job_id": job.id, "previous_owner": seen[job.id][1], "owner": owner},
                )
            if study.state == StudyState.QUEUED:
                attempt = f"attempt {job.attempts} of {job.max_attempts}"
                move(study, StudyState.SCORING, attempt, now)
            since = job.next_attempt_at if took_over else max(job.created_at, job.next_attempt_at)
            return ClaimedJob(
                job.id,
                study.study_uid,
                job.kind,
                job.attempts,
                job.max_attempts,
                took_over,
                max(0.0, (now - since).total_seconds()),
                job.analysis,
                job.job_key,
                None if job.request is None else json.loads(job.request),
            )

        return claim_first(self.catalog, candidates, guard, values, won)

    def renew(self, job_id: int, owner: str, lease_s: float) -> bool:
        """Extend the lease; False if the job is no longer ours."""
        with self.catalog.session() as s:
            result = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner, Job.state == JobState.RUNNING)
                .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_s))
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- outcomes ---------------------------------------------------------------------

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
            if study is not None:
                s.flush()
                self._settle(s, study, job, now)
            return True

    def fail(
        self,
        job_id: int,
        owner: str,
        error: str,
        backoff_s: float,
        backoff_max_s: float,
        permanent: bool = False,
    ) -> tuple[AttemptOutcome, float]:
        """Record a failed attempt: retry later with exponential backoff, or give up.

        Returns
        -------
        tuple
            ``(RETRY, delay_s)``, ``(FAILED, 0)`` or ``(LOST, 0)`` (not ours any more).
        """
        now = utcnow()
        with self.catalog.session() as s:
            job = s.get(Job, job_id)
            if job is None or job.lease_owner != owner:
                return AttemptOutcome.LOST, 0.0
            job.last_error = error[:2000]
            job.lease_owner = None
            study = s.get(Study, job.study_id)
            twin = s.scalars(
                select(Job.id).where(
                    Job.study_id == job.study_id,
                    Job.job_key == job.job_key,
                    Job.state == JobState.QUEUED,
                    Job.id != job.id,
                )
            ).first()
            if permanent or job.attempts >= job.max_attempts or twin is not None:
                # (a newer queued job of the same study and key replaces this one's retry)
                job.state = JobState.FAILED
                job.finished_at = now
                if study is not None:
                    s.flush()
                    self._settle(s, study, job, now)
                return AttemptOutcome.FAILED, 0.0
            delay = doubling(job.attempts, backoff_s, backoff_max_s)
            job.state = JobState.QUEUED
            job.next_attempt_at = now + dt.timedelta(seconds=delay)
            if study is not None and study.state == StudyState.SCORING:
                running = s.scalars(
                    select(Job.id).where(
                        Job.study_id == job.study_id,
                        Job.state == JobState.RUNNING,
                        Job.id != job.id,
                    )
                ).first()
                if running is None:
                    reason = f"retry in {delay:.0f} s after: {error[:200]}"
                    move(study, StudyState.QUEUED, reason, now)
            return AttemptOutcome.RETRY, delay

    @staticmethod
    def _settle(s: Session, study: Study, job: Job, now: dt.datetime) -> None:
        """Move the study once the last active job of ``job``'s batch has ended.

        Scored when every job of the batch is done; failed (with the first failure's
        error, named by its analysis) when any failed. While other jobs of the study are
        queued or running, the study stays as it is.
        """
        if study.state not in (StudyState.SCORING, StudyState.QUEUED):
            return
        active = s.scalars(
            select(Job.id).where(
                Job.study_id == study.id, Job.state.in_([JobState.QUEUED, JobState.RUNNING])
            )
        ).first()
        if active is not None:
            return
        batch = (
            [job]
            if job.batch is None
            else list(
                s.scalars(select(Job).where(Job.study_id == study.id, Job.batch == job.batch))
            )
        )
        failed = [j for j in batch if j.state == JobState.FAILED]
        if failed:
            first = min(failed, key=lambda j: j.id)
            error = first.last_error or WORKER_LOST
            prefix = f"{first.job_key}: " if len(batch) > 1 else ""
            move(study, StudyState.FAILED, prefix + error, now)
        elif study.state == StudyState.SCORING:
            move(study, StudyState.SCORED, None, now)

    # -- publication (broker backends) ----------------------------------------------------

    def mark_published(self, job_ids: list[int], now: dt.datetime | None = None) -> None:
        """Record that messages for these jobs were handed to the broker."""
        if job_ids:
            with self.catalog.session() as s:
                s.execute(
                    update(Job).where(Job.id.in_(job_ids)).values(published_at=now or utcnow())
                )

    def unpublished(
        self, republish_after_s: float, now: dt.datetime | None = None, limit: int = 500
    ) -> list[int]:
        """Due jobs that no message a worker will act on announces.

        A job is due when it is queued and past its backoff, or running with an expired
        lease. It needs a (new) message when it was never published, was last published
        before it became due (a retry after its backoff; a job whose worker died, after
        the lease expired: the broker's immediate redelivery found the lease still held),
        or longer ago than ``republish_after_s`` (the broker lost the message: restarted
        without persistence).
        """
        now = now or utcnow()
        stale = now - dt.timedelta(seconds=republish_after_s)
        needs = or_(
            Job.published_at.is_(None),
            and_(Job.state == JobState.QUEUED, Job.published_at < Job.next_attempt_at),
            and_(Job.state == JobState.RUNNING, Job.published_at < Job.lease_expires_at),
            Job.published_at < stale,
        )
        with self.catalog.session() as s:
            return list(
                s.scalars(select(Job.id).where(self._due(now), needs).order_by(Job.id).limit(limit))
            )

    # -- listings -------------------------------------------------------------------------

    def depth(self, now: dt.datetime | None = None) -> tuple[int, float]:
        """Queued jobs, and the age in seconds of the oldest (0 when none)."""
        now = now or utcnow()
        with self.catalog.session() as s:
            count, oldest = s.execute(
                select(func.count(), func.min(Job.created_at)).where(Job.state == JobState.QUEUED)
            ).one()
        if not count or oldest is None:
            return 0, 0.0
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        return int(count), max(0.0, (now - oldest).total_seconds())

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
                    j.lease_owner,
                    j.lease_expires_at,
                    j.created_at,
                    j.finished_at,
                    j.analysis,
                    j.job_key,
                )
                for j, uid in rows
            ]


def _dump(request: dict[str, Any] | None) -> str | None:
    return None if request is None else json.dumps(request, sort_keys=True)


def _requests(routing: str | None) -> list[JobRequest]:
    """The jobs a stored routing decision asks for (:data:`LEGACY_REQUEST` without one)."""
    if not routing:
        return [LEGACY_REQUEST]
    decision = json.loads(routing)
    return [
        JobRequest(str(r["job_key"]), str(r["analysis"]), dict(r))
        for r in decision.get("requests", [])
    ]
