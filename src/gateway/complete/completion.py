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

A completed study is queued for scoring when it holds at least one *scoreable* slide
series: a VL Whole Slide Microscopy series with a VOLUME level at or finer than the
model's target spacing (0.5 um/px + 10 %). Without one it fails with that reason; a study
with no whole-slide images at all (e.g. only a structured report) is ``ignored``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Protocol

from ..catalog import Catalog, StudySnapshot, StudyState, utcnow
from ..config import CompletionSettings
from ..errors import CatalogError

__all__ = ["CompletionMonitor", "Decision", "Submitter", "decide", "scoreable_series"]

logger = logging.getLogger(__name__)

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


class Submitter(Protocol):
    """Anything that can queue a study for scoring (the job queue)."""

    def submit(self, study_uid: str, reason: str) -> None:
        """Queue ``study_uid``."""


@dataclass(frozen=True)
class Decision:
    """What to do with a study now."""

    action: str  # "wait", "complete", "ignore"
    reason: str
    forced: bool = False


def scoreable_series(study: StudySnapshot, max_mpp: float | None) -> list[str]:
    """UIDs of the study's slide series that the model can score."""
    out = []
    for series in study.series:
        if series.sop_class_uid != WSI_SOP_CLASS:
            continue
        if max_mpp is None or (
            series.finest_volume_mpp is not None and series.finest_volume_mpp <= max_mpp
        ):
            out.append(series.series_uid)
    return out


def decide(
    study: StudySnapshot,
    settings: CompletionSettings,
    max_mpp: float | None,
    now: dt.datetime,
    since: dt.datetime | None = None,
) -> Decision:
    """Apply the completion rules to one receiving study (pure function).

    Parameters
    ----------
    since : datetime, optional
        When the gateway started listening; quiet time before it does not count.
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
    has_wsi = any(s.sop_class_uid == WSI_SOP_CLASS for s in study.series)

    if age >= settings.force_after_s and up >= settings.study_stable_s:
        return Decision("complete", f"forced after {settings.force_after_s:.0f} s", forced=True)
    if settings.expected_series > 0:
        ready = [uid for uid in scoreable_series(study, max_mpp) if uid in stable]
        if len(ready) >= settings.expected_series:
            return Decision("complete", f"{len(ready)} expected slide series received")
    if quiet >= settings.study_stable_s and all_stable:
        if not has_wsi:
            return Decision("ignore", "the study holds no whole-slide images")
        return Decision("complete", f"no new instance for {settings.study_stable_s:.0f} s")
    return Decision("wait", "receiving")


class CompletionMonitor:
    """Periodically completes studies and submits them for scoring.

    Parameters
    ----------
    catalog : Catalog
        The catalog.
    queue : Submitter
        Where complete studies go.
    settings : CompletionSettings
        The timers.
    max_mpp : float or None
        Finest spacing a slide series needs to be scoreable (None: any).
    """

    def __init__(
        self,
        catalog: Catalog,
        queue: Submitter,
        settings: CompletionSettings,
        max_mpp: float | None,
    ) -> None:
        self.catalog = catalog
        self.queue = queue
        self.settings = settings
        self.max_mpp = max_mpp
        self.since: dt.datetime | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: dt.datetime | None = None) -> list[tuple[str, Decision]]:
        """Run one pass; return the decisions that changed something."""
        now = now or utcnow()
        changed = []
        for study in self.catalog.studies(states=[StudyState.RECEIVING], limit=10_000):
            if study.hold_reason:  # a retrieve is in progress or incomplete
                continue
            decision = decide(study, self.settings, self.max_mpp, now, self.since)
            if decision.action == "wait":
                continue
            try:
                self.apply(study, decision)
            except CatalogError as exc:  # e.g. reopened meanwhile; next tick decides again
                logger.warning(
                    "completion skipped", extra={"study_uid": study.study_uid, "reason": str(exc)}
                )
                continue
            changed.append((study.study_uid, decision))
        return changed

    def apply(self, study: StudySnapshot, decision: Decision) -> None:
        """Carry out a decision: ignore, fail (nothing scoreable) or complete and queue."""
        uid = study.study_uid
        expect = [StudyState.RECEIVING]
        if decision.action == "ignore":
            self.catalog.transition(uid, StudyState.IGNORED, decision.reason, expect=expect)
            logger.info("study ignored", extra={"study_uid": uid, "reason": decision.reason})
            return
        if not self.catalog.transition(
            uid, StudyState.COMPLETE, decision.reason, expect=expect, forced=decision.forced
        ):
            return
        logger.info("study complete", extra={"study_uid": uid, "reason": decision.reason})
        self.queue_if_scoreable(uid)

    def queue_if_scoreable(self, study_uid: str) -> bool:
        """Queue a complete study, or fail it when no slide series is scoreable."""
        study = self.catalog.study(study_uid)
        if study is None:
            raise CatalogError(f"no study {study_uid} in the catalog")
        if not scoreable_series(study, self.max_mpp):
            limit = "" if self.max_mpp is None else f" at or finer than {self.max_mpp:.2f} um/px"
            reason = f"no whole-slide series with a level{limit} (20x equivalent) to score"
            self.catalog.transition(study_uid, StudyState.FAILED, reason)
            logger.warning("study not scoreable", extra={"study_uid": study_uid, "reason": reason})
            return False
        self.queue.submit(study_uid, "complete")
        return True

    def force(self, study_uid: str) -> None:
        """Complete a receiving study now (operator action) and queue it.

        Raises
        ------
        CatalogError
            If the study is unknown or not receiving (use ``ihgamp rescore`` instead).
        """
        self.catalog.release(study_uid)
        if not self.catalog.transition(
            study_uid,
            StudyState.COMPLETE,
            "forced by operator",
            expect=[StudyState.RECEIVING],
            forced=True,
        ):
            state = self.catalog.study(study_uid)
            raise CatalogError(
                f"study {study_uid} is {state.state if state else 'unknown'}, not receiving; "
                "use `ihgamp rescore` to score it again"
            )
        self.queue_if_scoreable(study_uid)

    # -- background thread ---------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`tick` every ``poll_interval_s`` in a daemon thread.

        Quiet time counts from now on (:attr:`since`).
        """
        self.since = utcnow()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="completion", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.poll_interval_s):
            try:
                self.tick()
            except Exception:
                logger.exception("completion pass failed; retrying next interval")

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
