"""Deciding when a study has been completely received.

Rules, checked every ``poll_interval_s`` for studies in ``receiving`` (all timers are
timestamps in the catalog, so a restart resumes them where they were):

1. **Expected series.** With ``expected_series = N > 0``, the study completes as soon
   as N scoreable slide series have each been quiet for ``series_stable_s``.
2. **Stable study.** Otherwise it completes when no instance has arrived for
   ``study_stable_s`` and every series has been quiet for ``series_stable_s``.
3. **Forced.** ``force_after_s`` after its first instance it completes regardless;
   an operator can force it at any time (``ihgamp complete --force``).

Time the gateway was not running does not count as quiet time: after a restart, a study
that was receiving needs ``series_stable_s`` / ``study_stable_s`` of quiet *while the
gateway listens* (``since``), so a study whose remaining series arrive right after an
outage is not completed (and scored) on the series that came before it; forced
completion likewise waits one ``study_stable_s`` after the restart.

A study on *hold* (a retrieve from a PACS in progress, or one that ended with failed
instances) is left alone until the retrieve completes it or an operator forces it.

What happens to a completed study (queued, or failed with nothing scoreable) is
:class:`~gateway.lifecycle.StudyLifecycle`'s; a study holding no series any enabled
analysis reads (e.g. only a structured report; a CT when only slide analyses are
enabled) is ``ignored``. With several receivers, only the holder
of the ``completion`` lease acts; another takes over within the lease when it stops.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from ihgamp_core.analysis.contract import WSI_SOP_CLASS

from ..catalog import Catalog, StudySnapshot, StudyState, utcnow
from ..catalog.leases import NamedLease
from ..config import CompletionSettings
from ..errors import CatalogError
from ..lifecycle import StudyLifecycle, scoreable_series
from ..loops import PollingLoop

__all__ = ["CompletionAction", "CompletionMonitor", "Decision", "decide"]

logger = logging.getLogger(__name__)


class CompletionAction(StrEnum):
    """What the completion rules decide for a receiving study."""

    WAIT = "wait"
    """More instances may come: keep receiving."""
    COMPLETE = "complete"
    """Complete it and route it to the analyses."""
    IGNORE = "ignore"
    """Close it: it holds nothing an enabled analysis reads."""


@dataclass(frozen=True)
class Decision:
    """What to do with a study now, and why."""

    action: CompletionAction
    reason: str
    forced: bool = False


def decide(
    study: StudySnapshot,
    settings: CompletionSettings,
    max_mpp: float | None,
    now: dt.datetime,
    since: dt.datetime | None = None,
    reads: Callable[[str], bool] | None = None,
) -> Decision:
    """Apply the completion rules to one receiving study (pure function).

    Parameters
    ----------
    since : datetime, optional
        When the gateway started listening; quiet time before it does not count.
    reads : callable, optional
        Whether an enabled analysis reads series of a SOP class (the router's
        :meth:`~gateway.routing.StudyRouter.reads`); default: whole-slide images only.
        A quiet study holding nothing any analysis reads is ignored.
    """

    def quiet_since(last: dt.datetime) -> float:
        return (now - (max(last, since) if since is not None else last)).total_seconds()

    age = (now - study.first_received_at).total_seconds()
    up = (now - since).total_seconds() if since is not None else float("inf")
    quiet = quiet_since(study.last_received_at)
    stable = {
        s.series_uid
        for s in study.series
        if quiet_since(s.last_received_at) >= settings.series_stable_s
    }
    all_stable = len(stable) == len(study.series)
    reads = reads or (lambda sop_class: sop_class == WSI_SOP_CLASS)
    has_input = any(reads(s.sop_class_uid) for s in study.series)

    if age >= settings.force_after_s and up >= settings.study_stable_s:
        return Decision(
            CompletionAction.COMPLETE, f"forced after {settings.force_after_s:.0f} s", forced=True
        )
    if settings.expected_series > 0:
        ready = [uid for uid in scoreable_series(study, max_mpp) if uid in stable]
        if len(ready) >= settings.expected_series:
            return Decision(
                CompletionAction.COMPLETE, f"{len(ready)} expected slide series received"
            )
    if quiet >= settings.study_stable_s and all_stable:
        if not has_input:
            return Decision(
                CompletionAction.IGNORE, "the study holds no series any enabled analysis reads"
            )
        return Decision(
            CompletionAction.COMPLETE, f"no new instance for {settings.study_stable_s:.0f} s"
        )
    return Decision(CompletionAction.WAIT, "receiving")


class CompletionMonitor:
    """Completes studies and hands them to the life cycle, on one node of the cluster.

    Parameters
    ----------
    catalog : Catalog
        The catalog.
    lifecycle : StudyLifecycle
        Completes, ignores and queues studies.
    settings : CompletionSettings
        The timers.
    leader : NamedLease, optional
        Cluster-wide lease; the monitor acts only while it holds it (several receivers
        may run; exactly one completes studies at a time). None: always act.
    """

    def __init__(
        self,
        catalog: Catalog,
        lifecycle: StudyLifecycle,
        settings: CompletionSettings,
        leader: NamedLease | None = None,
    ) -> None:
        self.catalog = catalog
        self.lifecycle = lifecycle
        self.settings = settings
        self.leader = leader
        self.since: dt.datetime | None = None
        self._loop = PollingLoop("completion", self._step, settings.poll_interval_s)

    @property
    def max_mpp(self) -> float | None:
        """Finest spacing a slide series needs to be scoreable."""
        return self.lifecycle.max_mpp

    def tick(self, now: dt.datetime | None = None) -> list[tuple[str, Decision]]:
        """Run one pass; return the decisions that changed something."""
        now = now or utcnow()
        changed = []
        router = self.lifecycle.router
        reads = router.reads if router is not None else None
        for study in self.catalog.studies(states=[StudyState.RECEIVING], limit=10_000):
            if study.hold_reason:  # a retrieve is in progress or incomplete
                continue
            decision = decide(study, self.settings, self.max_mpp, now, self.since, reads)
            if decision.action is CompletionAction.WAIT:
                continue
            try:
                acted = self.apply(study, decision)
            except CatalogError as exc:  # e.g. reopened meanwhile; next tick decides again
                logger.warning(
                    "completion skipped", extra={"study_uid": study.study_uid, "reason": str(exc)}
                )
                continue
            if acted:
                changed.append((study.study_uid, decision))
        return changed

    def apply(self, study: StudySnapshot, decision: Decision) -> bool:
        """Carry out a decision: ignore, or complete and queue (or fail: nothing scoreable)."""
        if decision.action is CompletionAction.IGNORE:
            return self.lifecycle.ignore(study.study_uid, decision.reason)
        return self.lifecycle.complete(study.study_uid, decision.reason, decision.forced)

    def _step(self) -> bool:
        if self.leader is not None and not self.leader.acquire():
            return False
        self.tick()
        return False

    # -- background thread ---------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`tick` every ``poll_interval_s`` (while leader) in a daemon thread.

        Quiet time counts from now on (:attr:`since`).
        """
        self.since = utcnow()
        self._loop.start()

    def stop(self) -> None:
        """Stop the thread and hand the leadership on."""
        self._loop.stop(10)
        if self.leader is not None:
            self.leader.release()
