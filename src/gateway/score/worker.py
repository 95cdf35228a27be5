"""Scoring one queued study: spool files -> engine -> reports in the outbox -> catalog.

One study is one case: every whole-slide series of the study is a slide of the case.
Slide and model errors are permanent (retrying cannot fix a corrupt slide); anything
else (I/O, database) is retried by the queue with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from ihgamp_core.errors import IhgampError
from ihgamp_core.scoring import Engine, ScoringOptions
from ihgamp_core.slide import SlideSource
from ihgamp_core.slide.resample import read_thumbnail

from ..catalog import Catalog, ClaimedJob
from ..config import ModelSettings
from ..queue.inprocess import PermanentJobError
from ..report.writer import ReportWriter

__all__ = ["ScoreProcessor", "model_key"]

logger = logging.getLogger(__name__)


def model_key(engine: Engine) -> str:
    """Identify head + backbone, to know whether a study was scored with this model."""
    return engine.model.key[:160]


class ScoreProcessor:
    """The job processor for ``score`` jobs.

    Parameters
    ----------
    catalog : Catalog
        Source of the study's files; receives the result summary.
    engine : Engine
        Loaded backbone and head.
    reports : ReportWriter
        Builds SR, heatmaps and FHIR into the outbox and queues deliveries.
    settings : ModelSettings
        Scoring options (tile cap, minimum tiles, batch size).
    on_reported : callable, optional
        Called with the study UID once its reports are written (wakes the dispatcher).
    """

    def __init__(
        self,
        catalog: Catalog,
        engine: Engine,
        reports: ReportWriter,
        settings: ModelSettings,
        on_reported: Callable[[str], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.engine = engine
        self.reports = reports
        self.on_reported = on_reported
        self.options = ScoringOptions(
            max_tiles=settings.max_tiles,
            min_tiles=settings.min_tiles,
            batch_size=settings.batch_size,
            workers=settings.readers,
            path=settings.pipeline,
        )

    def __call__(self, job: ClaimedJob) -> None:
        """Score the job's study and write its result."""
        files = self.catalog.wsi_files(job.study_uid)
        if not files:
            raise PermanentJobError("the study holds no whole-slide image files")
        sources = [
            SlideSource("dicom", tuple(Path(p) for p in paths), label=series_uid)
            for series_uid, paths in sorted(files.items())
        ]
        try:
            with ExitStack() as stack:
                slides = [stack.enter_context(source.open()) for source in sources]
                result = self.engine.score_case(slides, job.study_uid, self.options)
                thumbnails = {
                    source.label: read_thumbnail(slide)
                    for source, slide in zip(sources, slides, strict=True)
                }
            _, path = self.reports.write(
                job.study_uid, result, files, self.engine.head.probability, thumbnails
            )
        except IhgampError as exc:
            raise PermanentJobError(str(exc)) from exc
        self.catalog.record_result(
            job.study_uid, str(path), str(result.call), result.probability, model_key(self.engine)
        )
        logger.info(
            "study scored",
            extra={
                "study_uid": job.study_uid,
                "call": str(result.call),
                "tiles": result.n_tiles,
                "qc_flags": [str(f) for f in result.qc_flags],
                "seconds": round(result.timings.total_s, 2),
            },
        )
        if self.on_reported is not None:
            self.on_reported(job.study_uid)
