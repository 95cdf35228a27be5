"""The study state machine: the one function that writes ``studies.state``.

::

    receiving ──▶ complete ──▶ queued ──▶ scoring ──▶ scored
        │             │           ▲  │        │
        │             ├─▶ failed  └──┼── retry (backoff) ◀┘
        │             │  (refused)   └─▶ failed (max attempts / permanent error)
        └─▶ ignored ◀─┘ (no WSI; no analysis applies)
    any finished state ──(new WSI instance)──▶ receiving
    scored/failed/ignored ──(rescore)──▶ queued, or failed (refused) / ignored (nothing applies)

Every change of a study's state, wherever it is decided (an instance arriving, the
completion leader, a worker claiming or finishing a job, an operator), goes through
:func:`move` inside the caller's transaction, which checks it against
:data:`ALLOWED_TRANSITIONS` and keeps the timestamps that belong to the states. The
operations themselves (complete, queue, force, rescore) are composed in
:class:`gateway.lifecycle.StudyLifecycle`.
"""

from __future__ import annotations

import datetime as dt

from ..errors import CatalogError
from .schema import Study, StudyState

__all__ = ["ALLOWED_TRANSITIONS", "move"]

S = StudyState
ALLOWED_TRANSITIONS: dict[StudyState, frozenset[StudyState]] = {
    S.RECEIVING: frozenset({S.COMPLETE, S.IGNORED, S.FAILED}),
    S.COMPLETE: frozenset({S.QUEUED, S.FAILED, S.RECEIVING, S.IGNORED}),
    S.QUEUED: frozenset({S.SCORING, S.FAILED, S.RECEIVING, S.QUEUED}),
    S.SCORING: frozenset({S.SCORED, S.FAILED, S.QUEUED, S.RECEIVING}),
    S.SCORED: frozenset({S.QUEUED, S.RECEIVING, S.FAILED, S.IGNORED}),
    S.FAILED: frozenset({S.QUEUED, S.RECEIVING, S.FAILED, S.IGNORED}),
    S.IGNORED: frozenset({S.RECEIVING, S.QUEUED, S.FAILED, S.IGNORED}),
}


def move(
    study: Study,
    to_state: StudyState,
    reason: str | None,
    now: dt.datetime,
    forced: bool | None = None,
) -> None:
    """Move ``study`` (a row in the caller's session) to ``to_state``.

    Raises
    ------
    CatalogError
        If the state machine does not allow the transition.
    """
    if to_state not in ALLOWED_TRANSITIONS[StudyState(study.state)]:
        raise CatalogError(f"study {study.study_uid}: cannot go from {study.state} to {to_state}")
    study.state = to_state
    study.state_reason = None if reason is None else reason[:2000]
    if to_state == StudyState.COMPLETE:
        study.completed_at = now
    if to_state == StudyState.RECEIVING:
        study.completed_at = None
        study.forced = False
    if forced is not None:
        study.forced = forced
