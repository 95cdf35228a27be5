"""Finding and pulling studies from a PACS, and handing them to completion and scoring.

A retrieved study is put on *hold* while it is being pulled, so the completion timers do
not score a half-arrived study. When every instance arrived, the study is completed at
once and queued for scoring; when some failed, it stays on hold with the failed
instances in its reason, until a retry succeeds or an operator forces it
(``ihgamp complete --force``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..catalog import Catalog, StudyState
from ..config import PacsNode, Settings
from ..errors import RemoteError
from ..lifecycle import StudyLifecycle
from ..metrics import PULLS
from ..receive.store import InstanceStore
from .dicomweb import dicomweb_find_studies, dicomweb_retrieve_study
from .dimse import Progress, RetrieveReport, StudyMatch, find_studies, get_study, move_study

__all__ = ["PullOutcome", "RetrieveService"]

_QUEUED_OR_LATER = frozenset({StudyState.QUEUED, StudyState.SCORING, StudyState.SCORED})

logger = logging.getLogger(__name__)


@dataclass
class PullOutcome:
    """What a retrieve did for one study."""

    study_uid: str
    report: RetrieveReport
    state: str
    queued: bool
    note: str = ""
    failed_instances: list[str] = field(default_factory=list)


class RetrieveService:
    """Query/retrieve for the CLI, the HTTP API and the auto-pull poller.

    Parameters
    ----------
    settings : Settings
        PACS nodes, our AE title, accepted SOP classes.
    catalog : Catalog
        The catalog.
    store : InstanceStore
        Where C-GET and DICOMweb instances are stored.
    lifecycle : StudyLifecycle
        Completes and queues a study once every instance arrived.
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: InstanceStore,
        lifecycle: StudyLifecycle,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.lifecycle = lifecycle

    def find(
        self,
        pacs: str,
        *,
        patient_id: str | None = None,
        accession_number: str | None = None,
        study_date: str | None = None,
        modality: str | None = None,
        study_uid: str | None = None,
    ) -> list[StudyMatch]:
        """Search a PACS (C-FIND, or QIDO-RS for DICOMweb-only nodes)."""
        node = self.settings.pacs_node(pacs)
        filters = {
            "patient_id": patient_id,
            "accession_number": accession_number,
            "study_date": study_date,
            "modality": modality,
            "study_uid": study_uid,
        }
        if node.ae_title and node.host and node.port:
            return find_studies(
                node,
                self.settings.dicom.ae_title,
                timeout_s=self.settings.pull.timeout_s,
                **filters,
            )
        return dicomweb_find_studies(node, **filters)

    def study_uids(self, pacs: str, accession_number: str) -> list[str]:
        """The studies of an accession number on a PACS.

        Raises
        ------
        RemoteError
            If the PACS has no study with that accession number.
        """
        matches = self.find(pacs, accession_number=accession_number)
        if not matches:
            raise RemoteError(f"PACS {pacs} has no study with accession number {accession_number}")
        return [m.study_uid for m in matches]

    def retrieve(
        self,
        pacs: str,
        study_uid: str,
        method: str | None = None,
        progress: Progress | None = None,
        accession_number: str | None = None,
    ) -> PullOutcome:
        """Pull one study and, when it is complete, queue it for scoring.

        Parameters
        ----------
        pacs : str
            Configured PACS name.
        study_uid : str
            The study.
        method : {"move", "get", "dicomweb"}, optional
            Instead of the PACS's preferred method.
        progress : callable, optional
            Receives (completed, failed, warning, remaining).
        accession_number : str, optional
            Recorded on the study row created for the hold.

        Raises
        ------
        RemoteError
            If the retrieve cannot start or fails outright (the hold keeps the reason).
        """
        node = self.settings.pacs_node(pacs)
        how = method or node.retrieve
        self.catalog.hold(study_uid, f"retrieving from {pacs} by {how}", accession_number)
        try:
            report = self._run(node, how, study_uid, progress)
        except RemoteError as exc:
            PULLS.labels("failed").inc()
            self.catalog.hold(study_uid, f"retrieve from {pacs} failed: {exc}")
            raise
        PULLS.labels("complete" if report.complete else "incomplete").inc()
        if not report.complete:
            failed = report.failed_instances or [f"{report.failed} sub-operation(s)"]
            reason = (
                f"retrieve from {pacs} incomplete: {report.failed} failed "
                f"({', '.join(failed[:5])}); retry, or force with ihgamp complete --force"
            )
            self.catalog.hold(study_uid, reason)
            logger.warning(
                "retrieve incomplete", extra={"study_uid": study_uid, "failed": report.failed}
            )
            snapshot = self.catalog.study(study_uid)
            return PullOutcome(
                study_uid,
                report,
                snapshot.state if snapshot else "unknown",
                False,
                reason,
                list(report.failed_instances),
            )
        self.catalog.release(study_uid)
        return self._complete(study_uid, report, pacs)

    def _run(
        self, node: PacsNode, how: str, study_uid: str, progress: Progress | None
    ) -> RetrieveReport:
        ae = self.settings.dicom.ae_title
        if how == "move":
            return move_study(node, ae, ae, study_uid, progress)
        if how == "get":
            return get_study(
                node, ae, study_uid, self.store, self.settings.dicom.sop_classes, progress
            )
        if how == "dicomweb":
            return dicomweb_retrieve_study(node, study_uid, self.store, progress)
        raise RemoteError(f"unknown retrieve method {how!r}; use move, get or dicomweb")

    def _complete(self, study_uid: str, report: RetrieveReport, pacs: str) -> PullOutcome:
        snapshot = self.catalog.study(study_uid)
        if snapshot is None or not snapshot.series:
            note = "the PACS sent no instances for this study"
            self.catalog.hold(study_uid, f"retrieve from {pacs}: {note}")
            return PullOutcome(study_uid, report, "receiving", False, note)
        if snapshot.state != StudyState.RECEIVING:
            # Nothing new arrived (all duplicates): the study keeps its result.
            return PullOutcome(
                study_uid,
                report,
                snapshot.state,
                False,
                f"already {snapshot.state}; nothing new arrived",
            )
        self.lifecycle.complete(study_uid, f"retrieved from {pacs}")
        final = self.catalog.study(study_uid)
        queued = final is not None and final.state in _QUEUED_OR_LATER
        logger.info(
            "study retrieved",
            extra={"study_uid": study_uid, "method": report.method, "instances": report.completed},
        )
        return PullOutcome(study_uid, report, final.state if final else "?", queued)
