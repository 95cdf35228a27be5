"""The study life cycle's operations: complete, ignore, queue, force, rescore.

The completion leader, the retrieve service, the command line and the HTTP API change a
study's state only through :class:`StudyLifecycle`; the state machine itself (the only
writer of ``studies.state``) is :mod:`gateway.catalog.lifecycle`.

A completed study is queued for scoring when it holds at least one *scoreable* slide
series: a VL Whole Slide Microscopy series with a VOLUME level at or finer than the
model's target spacing (0.5 um/px + 10 %). Without one it fails with that reason.

With a router (:class:`gateway.routing.StudyRouter`, the enabled analyses) the study is
routed first and the decision stored: one job per request; a study no analysis applies
to is ``ignored`` with the reason "no analysis applies" (not an error); a study whose
slides were all refused (unknown stain, IHC without its H&E, mismatched blocks) is
``failed`` with the refusals' messages, its files kept for a rescore. A study that an
arriving instance reopened while it was being decided is not failed or ignored by that
decision (the decision read it before the instance): it receives again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from ihgamp_core.analysis.contract import WSI_SOP_CLASS

from . import analyses
from .catalog import AnalysisStore, Catalog, JobStore, StudySnapshot, StudyState
from .errors import CatalogError

if TYPE_CHECKING:
    from ihgamp_core.analysis import RoutingDecision

    from .routing import StudyRouter

__all__ = ["RowSubmitter", "StudyLifecycle", "Submitter", "scoreable_series"]

logger = logging.getLogger(__name__)


class Submitter(Protocol):
    """Anything that can queue a study for scoring (a job queue backend)."""

    def submit(self, study_uid: str, reason: str) -> None:
        """Queue ``study_uid`` (durable before returning)."""


class RowSubmitter:
    """Queue by writing the job row only; in-process workers (polling) pick it up.

    For processes without a queue backend of their own (an HTTP app in tests); the
    gateway's processes use their backend (:func:`gateway.parts.build_core`).
    """

    def __init__(self, jobs: JobStore, max_attempts: int) -> None:
        self.jobs = jobs
        self.max_attempts = max_attempts

    def submit(self, study_uid: str, reason: str) -> None:
        """Write the job rows."""
        self.jobs.enqueue_all(study_uid, self.max_attempts, reason)


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


class StudyLifecycle:
    """Owner of the operations that move a study through its life cycle.

    Parameters
    ----------
    catalog : Catalog
        The catalog.
    queue : Submitter
        Where scoreable studies are queued.
    max_mpp : float or None
        Finest spacing a slide series needs to be scoreable by the engine (None: any);
        checked before routing when every enabled analysis needs the engine's scoring
        level (:attr:`AnalysisEntry.needs_scoring_level`).
    router : StudyRouter, optional
        Routes studies over the enabled analyses; without one every slide of a study is
        scored in one job of the legacy analysis (:func:`analyses.legacy_entry`).
    """

    def __init__(
        self,
        catalog: Catalog,
        queue: Submitter,
        max_mpp: float | None,
        router: StudyRouter | None = None,
    ) -> None:
        self.catalog = catalog
        self.queue = queue
        self.max_mpp = max_mpp
        self.router = router
        self.analyses = AnalysisStore(catalog)
        self.jobs = JobStore(catalog)

    def complete(self, study_uid: str, reason: str, forced: bool = False) -> bool:
        """Complete a receiving study and queue it (or fail it: nothing scoreable).

        Returns
        -------
        bool
            False if the study was no longer receiving (another node acted first).
        """
        if not self.catalog.transition(
            study_uid, StudyState.COMPLETE, reason, expect=[StudyState.RECEIVING], forced=forced
        ):
            return False
        logger.info("study complete", extra={"study_uid": study_uid, "reason": reason})
        self.queue_if_scoreable(study_uid)
        return True

    def ignore(self, study_uid: str, reason: str) -> bool:
        """Close a receiving study that holds nothing to score."""
        done = self.catalog.transition(
            study_uid, StudyState.IGNORED, reason, expect=[StudyState.RECEIVING]
        )
        if done:
            logger.info("study ignored", extra={"study_uid": study_uid, "reason": reason})
        return done

    def queue_if_scoreable(self, study_uid: str) -> bool:
        """Queue a complete study, or fail it when no slide series is scoreable."""
        study = self.catalog.study(study_uid)
        if study is None:
            raise CatalogError(f"no study {study_uid} in the catalog")
        if self._level_decides() and not scoreable_series(study, self.max_mpp):
            limit = "" if self.max_mpp is None else f" at or finer than {self.max_mpp:.2f} um/px"
            reason = f"no whole-slide series with a level{limit} (20x equivalent) to score"
            if self._settle(study_uid, StudyState.FAILED, reason):
                logger.warning(
                    "study not scoreable", extra={"study_uid": study_uid, "reason": reason}
                )
            return False
        return self._route_and_queue(study_uid, "complete")

    def _level_decides(self) -> bool:
        """Whether every analysis needs the engine's 20x level: then it decides first.

        The check comes before routing. With an analysis enabled that reads its own
        resolution, a slide too coarse for the engine is routed anyway and the engine's
        job reports it.
        """
        if self.router is None:
            return analyses.legacy_entry().needs_scoring_level
        return all(analyses.entry(str(spec.name)).needs_scoring_level for spec in self.router.specs)

    def _settle(self, study_uid: str, state: StudyState, reason: str) -> bool:
        """End a study that nothing will score (failed, ignored) and cancel its waiting jobs.

        Unless it was reopened meanwhile: an instance that arrived while the study was being
        decided (the decision read the study before it) makes it receive again, and its
        completion decides anew. Returns whether the study was ended.
        """
        if not self.catalog.transition(study_uid, state, reason, expect=_DECIDING):
            logger.info("study reopened while being decided", extra={"study_uid": study_uid})
            return False
        self.jobs.cancel_waiting(study_uid, reason)
        return True

    def _route_and_queue(self, study_uid: str, reason: str) -> bool:
        """Route the study (when a router is set), store the decision, queue its jobs."""
        if self.router is None:
            self.analyses.set_routing(study_uid, None)
            self.queue.submit(study_uid, reason)
            return True
        decision = self.router.decide(study_uid)
        self.analyses.set_routing(study_uid, self.router.to_dict(decision))
        logger.info(
            "study routed",
            extra={
                "study_uid": study_uid,
                "jobs": [r.job_key for r in decision.requests],
                "refusals": [str(r.kind) for r in decision.refusals],
            },
        )
        if decision.no_analysis_applies:
            skipped = "; ".join(f"{s.analysis}: {s.reason}" for s in decision.skipped)
            why = "no analysis applies" + (f" ({skipped})" if skipped else "")
            self._settle(study_uid, StudyState.IGNORED, why)
            return False
        refused = _refusals(decision)
        if not decision.requests:
            if self._settle(study_uid, StudyState.FAILED, f"not scored: {refused}"):
                logger.warning(
                    "every slide refused", extra={"study_uid": study_uid, "reason": refused}
                )
            return False
        self.queue.submit(study_uid, f"{reason}; refused: {refused}" if refused else reason)
        return True

    def force(self, study_uid: str) -> None:
        """Complete a receiving study now (operator action), held or not, and queue it.

        Raises
        ------
        CatalogError
            If the study is unknown or not receiving (use :meth:`rescore` instead).
        """
        self.catalog.release(study_uid)
        if not self.complete(study_uid, "forced by operator", forced=True):
            state = self.catalog.study(study_uid)
            raise CatalogError(
                f"study {study_uid} is {state.state if state else 'unknown'}, not receiving; "
                "use `ihgamp rescore` to score it again"
            )

    def rescore(self, study_uid: str, reason: str = "rescore") -> None:
        """Queue a finished study for scoring again (after a failure, or a new model).

        An operator's rescore also clears a review flag (a withheld result): the
        operator has looked at the study.

        Raises
        ------
        CatalogError
            If the study is unknown, still receiving or being scored.
        """
        study = self.catalog.study(study_uid)
        if study is None:
            raise CatalogError(f"no study {study_uid} in the catalog")
        if study.state in (StudyState.RECEIVING, StudyState.SCORING):
            raise CatalogError(f"study {study_uid} is {study.state}; wait until it finishes")
        self.analyses.flag_review(study_uid, None)
        self._route_and_queue(study_uid, reason)


#: The states a study is decided from (completed, or finished and rescored): never while it
#: receives again.
_DECIDING = [s for s in StudyState if s is not StudyState.RECEIVING]


def _refusals(decision: RoutingDecision) -> str:
    """One line naming each refusal (kind, analysis, message)."""
    return "; ".join(
        f"{r.kind}" + (f" ({r.analysis})" if r.analysis else "") + f": {r.message}"
        for r in decision.refusals
    )
