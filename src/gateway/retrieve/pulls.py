"""Pull requests from the EHR/LIS (``POST /api/pull``): validated, de-duplicated, queued.

A request names one thing to pull, never a pattern: an accession number, a Study Instance
UID, or a patient ID with a study date (or date range). It becomes a row in
``pull_requests`` (answered 202 with the row's id; ``GET /api/pull/{id}`` reports on it);
an identical request still queued or running gets the same id instead of a second pull.
Receivers run the rows with :func:`~gateway.catalog.leases.claim_first` leases, at most
``pull.max_concurrent`` at a time per receiver, so a burst of requests cannot spawn
unbounded threads or transfers; a receiver that dies mid-pull leaves its row to another
once the lease expires.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..catalog import Catalog, utcnow
from ..catalog.leases import claim_first
from ..catalog.schema import PullRequest, PullState
from ..config import Settings
from ..errors import ConfigError, GatewayError
from ..loops import PollingLoop
from .service import RetrieveService

__all__ = ["PullDesk", "PullQuery", "PullRunner", "parse_pull_request"]

logger = logging.getLogger(__name__)

#: Characters that make a DICOM query a pattern (PS3.4 C.2.2.2.4) or split a value.
_WILDCARDS = re.compile(r"[*?\\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATE = re.compile(r"^\d{8}(-\d{8})?$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class PullQuery(BaseModel):
    """One pull request's body (unknown fields are refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    accession_number: str | None = Field(default=None, min_length=1, max_length=64)
    study_instance_uid: str | None = Field(default=None, min_length=1, max_length=64)
    patient_id: str | None = Field(default=None, min_length=1, max_length=64)
    study_date: str | None = Field(default=None, min_length=8, max_length=17)
    pacs: str | None = Field(default=None, min_length=1, max_length=64)
    method: str | None = Field(default=None, pattern=r"^(move|get|dicomweb)$")

    @model_validator(mode="after")
    def _one_target(self) -> PullQuery:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, str) and _CONTROL.search(value):
                raise ValueError(f"{name} must not contain control characters")
        for name in ("accession_number", "study_instance_uid", "patient_id"):
            value = getattr(self, name)
            if value is not None and _WILDCARDS.search(value):
                raise ValueError(f"{name} must not contain wildcards (*, ?) or backslashes")
        if self.study_instance_uid is not None and not _UID.match(self.study_instance_uid):
            raise ValueError("study_instance_uid is not a DICOM UID")
        if self.study_date is not None and not _DATE.match(self.study_date):
            raise ValueError("study_date must be YYYYMMDD or YYYYMMDD-YYYYMMDD")
        given = [
            self.accession_number is not None,
            self.study_instance_uid is not None,
            self.patient_id is not None,
        ]
        if sum(given) != 1:
            raise ValueError(
                "give exactly one of accession_number, study_instance_uid, "
                "or patient_id with study_date"
            )
        if (self.patient_id is None) != (self.study_date is None):
            raise ValueError("patient_id and study_date go together")
        return self

    def key(self, pacs: str) -> str:
        """Identity of the request, for de-duplication."""
        parts = [pacs, self.accession_number, self.study_instance_uid, self.patient_id]
        parts += [self.study_date, self.method]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def parse_pull_request(body: object) -> PullQuery:
    """Validate a request body.

    Raises
    ------
    ConfigError
        With a one-line reason naming the field.
    """
    if not isinstance(body, dict):
        raise ConfigError("expected a JSON object")
    try:
        return PullQuery.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ConfigError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


def _view(row: PullRequest) -> dict[str, Any]:
    return {
        "id": row.id,
        "state": row.state,
        "pacs": row.pacs,
        "studies": json.loads(row.studies) if row.studies else [],
        "completed": row.completed,
        "failed": row.failed,
        "error": row.error,
        "created_at": row.created_at.isoformat(),
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }


class PullDesk:
    """Takes pull requests (the API side) and reports on them.

    Parameters
    ----------
    catalog : Catalog
        Where requests are queued.
    settings : Settings
        The configured PACS nodes.
    on_queued : callable, optional
        Called after a request is queued (wakes a local runner).
    """

    def __init__(self, catalog: Catalog, settings: Settings, on_queued: Any = None) -> None:
        self.catalog = catalog
        self.settings = settings
        self.on_queued = on_queued

    def request(self, body: object, requested_by: str | None = None) -> dict[str, Any]:
        """Queue a pull (or return the identical one already queued or running).

        Raises
        ------
        ConfigError
            Invalid body, or a PACS that is not configured.
        """
        query = parse_pull_request(body)
        if not self.settings.pacs:
            raise ConfigError("no PACS is configured ([[pacs]])")
        pacs = query.pacs or self.settings.pacs[0].name
        self.settings.pacs_node(pacs)  # ConfigError when unknown
        key = query.key(pacs)
        for _ in range(3):
            try:
                view = self._queue(key, pacs, query, requested_by)
                break
            except IntegrityError:  # an identical request was queued at the same moment
                continue
        else:
            raise ConfigError("the pull request could not be queued; try again")
        if not view["duplicate"]:
            logger.info("pull queued", extra={"pull_id": view["id"], "pacs": pacs})
            if self.on_queued is not None:
                self.on_queued()
        return view

    def _queue(
        self, key: str, pacs: str, query: PullQuery, requested_by: str | None
    ) -> dict[str, Any]:
        with self.catalog.session() as s:
            existing = s.scalars(
                select(PullRequest)
                .where(
                    PullRequest.key == key,
                    PullRequest.state.in_([PullState.QUEUED, PullState.RUNNING]),
                )
                .order_by(PullRequest.id)
            ).first()
            if existing is not None:
                return {**_view(existing), "duplicate": True}
            row = PullRequest(
                key=key,
                state=PullState.QUEUED,
                pacs=pacs,
                method=query.method,
                accession_number=query.accession_number,
                study_uid=query.study_instance_uid,
                patient_id=query.patient_id,
                study_date=query.study_date,
                requested_by=requested_by,
                completed=0,
                failed=0,
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return {**_view(row), "duplicate": False}

    def get(self, pull_id: int) -> dict[str, Any] | None:
        """One request's state, or None."""
        with self.catalog.session() as s:
            row = s.get(PullRequest, pull_id)
            return None if row is None else _view(row)


class PullRunner:
    """Runs queued pull requests on a receiver, ``pull.max_concurrent`` at a time.

    Parameters
    ----------
    catalog : Catalog
        The catalog.
    retrieve : RetrieveService
        Finds and retrieves studies.
    settings : Settings
        ``pull.max_concurrent``, ``pull.lease_s``.
    owner : str
        This node's lease owner name.
    """

    def __init__(
        self, catalog: Catalog, retrieve: RetrieveService, settings: Settings, owner: str
    ) -> None:
        self.catalog = catalog
        self.retrieve = retrieve
        self.settings = settings
        self.owner = owner
        self._loops = [
            PollingLoop(f"pull-{i}", self.run_once, 2.0)
            for i in range(settings.pull.max_concurrent)
        ]

    def run_once(self) -> bool:
        """Claim and run one queued pull; False if none was due."""
        row = self._claim()
        if row is None:
            return False
        pull_id, pacs, method, query = row
        studies: list[str] = []
        completed = failed = 0
        error = None
        try:
            studies = self._find(pacs, query)
            self._save(pull_id, studies=studies)
            for uid in studies:
                self._save(pull_id)  # renews the lease between studies
                try:
                    outcome = self.retrieve.retrieve(
                        pacs, uid, method, accession_number=query.get("accession_number")
                    )
                    completed += outcome.report.completed
                    failed += outcome.report.failed
                except GatewayError as exc:
                    failed += 1
                    error = str(exc)[:500]
        except GatewayError as exc:
            error = str(exc)[:500]
        state = PullState.FAILED if error and not completed else PullState.DONE
        self._save(pull_id, state=state, completed=completed, failed=failed, error=error)
        logger.info(
            "pull finished",
            extra={"pull_id": pull_id, "state": str(state), "studies": len(studies)},
        )
        return True

    def _find(self, pacs: str, query: dict[str, str | None]) -> list[str]:
        if query.get("study_uid"):
            return [str(query["study_uid"])]
        if query.get("accession_number"):
            return self.retrieve.study_uids(pacs, str(query["accession_number"]))
        matches = self.retrieve.find(
            pacs, patient_id=query.get("patient_id"), study_date=query.get("study_date")
        )
        return [m.study_uid for m in matches]

    def _claim(self) -> tuple[int, str, str | None, dict[str, str | None]] | None:
        now = utcnow()
        lease = dt.timedelta(seconds=self.settings.pull.lease_s)
        due = or_(
            PullRequest.state == PullState.QUEUED,
            and_(PullRequest.state == PullState.RUNNING, PullRequest.lease_expires_at < now),
        )

        def guard(row: PullRequest) -> list[ColumnElement[bool]]:
            return [
                PullRequest.state == row.state,
                PullRequest.lease_owner.is_not_distinct_from(row.lease_owner),
            ]

        def values(row: PullRequest) -> dict[str, object]:
            return {
                "state": PullState.RUNNING,
                "lease_owner": self.owner,
                "lease_expires_at": now + lease,
                "started_at": now,
            }

        def won(s: Session, row: PullRequest) -> tuple[int, str, str | None, dict[str, str | None]]:
            query = {
                "accession_number": row.accession_number,
                "study_uid": row.study_uid,
                "patient_id": row.patient_id,
                "study_date": row.study_date,
            }
            return row.id, row.pacs, row.method, query

        candidates = select(PullRequest).where(due).order_by(PullRequest.id)
        return claim_first(self.catalog, candidates, guard, values, won)

    def _save(self, pull_id: int, **values: Any) -> None:
        with self.catalog.session() as s:
            row = s.get(PullRequest, pull_id)
            if row is None:
                return
            if "studies" in values:
                row.studies = json.dumps(values.pop("studies"))
            for name, value in values.items():
                setattr(row, name, value)
            if values.get("state") in (PullState.DONE, PullState.FAILED):
                row.finished_at = utcnow()
                row.lease_owner = None
            else:
                row.lease_expires_at = utcnow() + dt.timedelta(seconds=self.settings.pull.lease_s)

    def wake(self) -> None:
        """Look for queued pulls now."""
        for loop in self._loops:
            loop.wake()

    def start(self) -> None:
        """Start the runner threads."""
        for loop in self._loops:
            loop.start()

    def stop(self) -> None:
        """Stop them (a pull in progress finishes)."""
        for loop in self._loops:
            loop.stop(60)
