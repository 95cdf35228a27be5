"""Auto-pull: poll PACS nodes for new slide studies and retrieve and score them.

Every ``pull.interval_s`` each PACS with ``auto_pull = true`` is asked (C-FIND, or QIDO-RS)
for studies with ``ModalitiesInStudy = pull.modality``. A PACS cannot be queried by the
time it *received* a study, only by Study Date, and slides are often scanned days after
the study date; so the query covers Study Dates from ``pull.lookback_days`` before the
last *successful* pass up to today, and the catalog tells which matches are new. For each
match:

* not in the catalog: retrieve it (held until complete, then scored);
* scored with another model: score it again (the data is already here);
* otherwise (in progress, held, scored with this model, failed, ignored): skip.

The cursor advances only after a pass in which the query and every retrieve started
succeeded, so a PACS outage delays the pull and never skips a study. The cursor and the
catalog persist, so a restart neither misses nor repeats a study.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping

from ..catalog import AnalysisStore, Catalog, StudyState, utcnow
from ..catalog.leases import NamedLease
from ..catalog.pull_cursors import PullCursorStore
from ..config import PacsNode, Settings
from ..errors import GatewayError
from ..loops import PollingLoop
from .service import RetrieveService

__all__ = ["AutoPuller"]

logger = logging.getLogger(__name__)


class AutoPuller:
    """The poller thread.

    Parameters
    ----------
    settings : Settings
        PACS nodes and ``[pull]`` settings.
    catalog : Catalog
        The catalog (cursors, study states).
    retrieve : RetrieveService
        Find and retrieve.
    model_keys : mapping of str to str
        The loaded model's key of each analysis that has one here (the worker's engine:
        :attr:`AnalysisEntry.uses_engine`); a study with a result of such an analysis from
        another model is rescored.
    leader : NamedLease, optional
        With several receivers, only the lease holder polls (the completion leader).
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        retrieve: RetrieveService,
        model_keys: Mapping[str, str],
        leader: NamedLease | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.retrieve = retrieve
        self.model_keys = dict(model_keys)
        self.leader = leader
        self._loop = PollingLoop("auto-pull", self._step, settings.pull.interval_s)

    @property
    def nodes(self) -> list[PacsNode]:
        """The PACS nodes polled."""
        return [p for p in self.settings.pacs if p.auto_pull]

    def poll(self, node: PacsNode, now: dt.datetime | None = None) -> list[str]:
        """One pass over one PACS; return the study UIDs pulled or requeued."""
        now = now or utcnow()
        cursor = PullCursorStore(self.catalog).get(node.name)
        since = cursor[0] if cursor else now
        start = since - dt.timedelta(days=self.settings.pull.lookback_days)
        date_range = f"{start:%Y%m%d}-{now:%Y%m%d}"
        acted = []
        try:
            matches = self.retrieve.find(
                node.name, study_date=date_range, modality=self.settings.pull.modality
            )
            for match in matches:
                if self._handle(node, match.study_uid, match.accession_number):
                    acted.append(match.study_uid)
        except (GatewayError, OSError) as exc:
            PullCursorStore(self.catalog).set(node.name, error=str(exc))
            logger.warning(
                "auto-pull pass failed; will retry",
                extra={"pacs": node.name, "error": str(exc)[:300]},
            )
            return acted
        PullCursorStore(self.catalog).set(node.name, success_at=now)
        return acted

    def _handle(self, node: PacsNode, study_uid: str, accession: str | None) -> bool:
        study = self.catalog.study(study_uid)
        if study is None:
            logger.info(
                "auto-pull: new slide study", extra={"pacs": node.name, "study_uid": study_uid}
            )
            self.retrieve.retrieve(node.name, study_uid, accession_number=accession)
            return True
        if study.state == StudyState.SCORED and self._other_model(study_uid):
            self.retrieve.lifecycle.rescore(study_uid, "rescore: scored with another model")
            return True
        return False

    def _other_model(self, study_uid: str) -> bool:
        """Whether a result of the study came from another model than the one loaded."""
        return any(
            r.analysis in self.model_keys and r.model_key != self.model_keys[r.analysis]
            for r in AnalysisStore(self.catalog).results(study_uid)
        )

    def poll_all(self) -> None:
        """One pass over every auto-pull PACS."""
        for node in self.nodes:
            self.poll(node)

    def _step(self) -> bool:
        if self.leader is None or self.leader.held:
            self.poll_all()
        return False

    def start(self) -> None:
        """Poll in a daemon thread, first pass at once."""
        if self.nodes:
            self._loop.start()

    def stop(self) -> None:
        """Stop the thread (a retrieve in progress finishes)."""
        self._loop.stop(60)
