"""Scoring one job: spool files -> analysis -> reports in the outbox -> catalog.

A job is one request of the study's routing decision (:mod:`gateway.routing`): an
analysis on named slides. Every analysis takes the same road, the analysis contract:
``analysis.run`` on the request's slides, then :meth:`ReportWriter.write` (which calls
``analysis.report``), then the catalog. Which analysis a job names is looked up in the
registry (:mod:`gateway.analyses`), whose entry loads it on the worker's first job of it
(with the worker's loaded ``[model]`` engine, for analyses that score with it). Every
result's outputs go to ``<study>/<job folder>/`` and its catalog row records them; a job
from before routing (no request) is the legacy analysis on every slide of the study.

Slide, model and pairing errors are permanent (retrying cannot fix a corrupt slide or
two sections of different blocks); anything else (I/O, database) is retried by the
queue with backoff.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ihgamp_core.analysis import (
    Analysis,
    AnalysisRequest,
    ModalityPath,
    SeriesInput,
    SeriesKind,
    SlideRef,
    SlideRole,
    series_kind,
)
from ihgamp_core.errors import IhgampError, MixedPatientsError, PairingError
from ihgamp_core.slide import SlideSource
from ihgamp_core.slide.resample import read_thumbnail

from .. import analyses as registry
from ..analyses import AnalysisLoadError, LoadContext
from ..analyses.engine import Engine, ScoringOptions
from ..catalog import AnalysisStore, Catalog, ClaimedJob, ResultManifest
from ..config import AnalysesSettings
from ..errors import PermanentJobError, ResultUnchangedError, ResultWithheldError
from ..report.writer import ReportWriter

__all__ = [
    "AnalysisModels",
    "ScoreProcessor",
    "request_from_dict",
]

logger = logging.getLogger(__name__)


def request_from_dict(data: Mapping[str, Any]) -> AnalysisRequest:
    """The :class:`AnalysisRequest` a job row carries (:meth:`AnalysisRequest.to_dict`)."""
    return AnalysisRequest(
        str(data["analysis"]),
        tuple(
            SlideRef(str(s["key"]), SlideRole(s["role"]), s.get("block")) for s in data["slides"]
        ),
        ModalityPath(data["path"]) if data.get("path") else None,
        data.get("pairing"),
    )


class AnalysisModels:
    """The analyses a worker runs, each loaded by its registry entry on first use.

    Parameters
    ----------
    settings : AnalysesSettings
        The enabled analyses and their ``[analyses.<name>]`` tables.
    device : str
        Compute device (``auto``, ``cpu``, ``cuda``...) where a table names none.
    engine : Engine, optional
        The worker's loaded ``[model]`` engine, for analyses that score with it.
    scoring : ScoringOptions, optional
        The worker's ``[model]`` scoring options.
    """

    def __init__(
        self,
        settings: AnalysesSettings,
        device: str = "auto",
        engine: Engine | None = None,
        scoring: ScoringOptions | None = None,
    ) -> None:
        self.settings = settings
        self.device = device
        self.engine = engine
        self.scoring = scoring
        self._lock = threading.Lock()
        self._loaded: dict[str, Analysis[Any]] = {}

    def get(self, name: str) -> Analysis[Any]:
        """The analysis ``name``, loading its model the first time.

        Raises
        ------
        PermanentJobError
            For an analysis this gateway does not run (not enabled any more, unknown), or
            whose model cannot be loaded.
        """
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    def _load(self, name: str) -> Analysis[Any]:
        """Load a registered analysis, enabled or not.

        ``enabled`` decides routing: a job queued before a configuration change, or by a
        node with another list, still runs.
        """
        try:
            entry = registry.entry(name)
        except KeyError as exc:
            raise PermanentJobError(
                f"analysis {name!r} is not run by these workers: {exc.args[0]}"
            ) from None
        table = self.settings.settings_of(name)
        device = table.device if table.device != "auto" else self.device
        started = time.perf_counter()
        try:
            analysis = entry.load(LoadContext(table, device, self.engine, self.scoring))
        except (AnalysisLoadError, IhgampError) as exc:
            raise PermanentJobError(str(exc)) from exc
        if str(analysis.spec.name) != name:
            raise PermanentJobError(f"the {name!r} loader built {analysis.spec.name!r}")
        logger.info(
            "analysis loaded",
            extra={
                "analysis": name,
                "model": str(getattr(analysis, "model_key", ""))[:160],
                "device": device,
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
        return analysis


class ScoreProcessor:
    """The job processor for ``score`` jobs.

    Parameters
    ----------
    catalog : Catalog
        Source of the study's files; receives the result summary.
    reports : ReportWriter
        Builds SR, heatmaps and FHIR into the outbox and queues deliveries.
    analyses : AnalysisModels
        The analyses a job may name (loaded on first use, HRD on the worker's engine).
    on_reported : callable, optional
        Called with the study UID once its reports are written (wakes the dispatcher).
    """

    def __init__(
        self,
        catalog: Catalog,
        reports: ReportWriter,
        analyses: AnalysisModels,
        on_reported: Callable[[str], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.reports = reports
        self.analyses = analyses
        self.on_reported = on_reported
        self.results = AnalysisStore(catalog)
        self.legacy = registry.legacy_entry().name

    def __call__(self, job: ClaimedJob) -> None:
        """Run the job's analysis on its series and write its result."""
        every = self.catalog.series_files(job.study_uid)
        kinds = {k: series_kind(series.sop_class_uid) for k, series in every.items()}
        files = {k: series.paths for k, series in every.items()}
        if job.request is not None:
            request = request_from_dict(job.request)
            missing = [k for k in request.slide_keys() if k not in files]
            if missing:
                raise PermanentJobError(
                    f"{len(missing)} series of the request are no longer in the study; rescore it"
                )
        elif job.analysis == self.legacy:  # queued before routing: every slide
            slides = sorted(k for k, kind in kinds.items() if kind is SeriesKind.SLIDE)
            if not slides:
                raise PermanentJobError("the study holds no whole-slide image files")
            request = AnalysisRequest(self.legacy, tuple(SlideRef(k, SlideRole.HE) for k in slides))
        else:
            raise PermanentJobError(f"a {job.analysis} job without a request")
        files = {k: files[k] for k in request.slide_keys()}
        kinds = {k: kinds[k] for k in request.slide_keys()}
        analysis = self.analyses.get(job.analysis)
        inputs_key = self._inputs_key(job, analysis, files)
        previous = self.results.result(job.study_uid, job.job_key)
        if (
            previous is not None
            and previous.inputs_key == inputs_key
            and previous.outputs is not None
        ):
            logger.info(
                "inputs and model unchanged since the last result; it stands",
                extra={"study_uid": job.study_uid, "job": job.job_key},
            )
            return
        self._run(job, analysis, request, files, kinds, inputs_key)
        if self.on_reported is not None:
            self.on_reported(job.study_uid)

    def _inputs_key(
        self, job: ClaimedJob, analysis: Analysis[Any], files: Mapping[str, list[str]]
    ) -> str:
        """The model, its options, the request and the exact input files, as one digest.

        Equal keys give equal results: a re-routing that leaves a request's inputs as
        they were (an IHC slide arriving changes HER2's inputs, not HRD's) does not run it.
        """
        parts = [
            job.analysis,
            str(getattr(analysis, "model_key", type(analysis).__name__)),
            repr(getattr(analysis, "options", None)),
            json.dumps(job.request, sort_keys=True, default=str),
            *self.results.input_files(job.study_uid, sorted(files)),
        ]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    @staticmethod
    def _unchanged(job: ClaimedJob, unchanged: ResultUnchangedError) -> Path:
        """The result equals the one issued: it stands; the catalog is brought up to it."""
        logger.info(
            "result equals the one issued; it stands",
            extra={"study_uid": job.study_uid, "job": job.job_key},
        )
        return unchanged.path

    def _withheld(self, job: ClaimedJob, exc: Exception) -> PermanentJobError:
        """A result that must not be issued: flag the study for review, fail the job."""
        reason = f"{job.job_key}: {exc}"
        self.results.flag_review(job.study_uid, reason)
        logger.error(
            "result withheld; study flagged for review",
            extra={"study_uid": job.study_uid, "job": job.job_key, "reason": str(exc)},
        )
        return PermanentJobError(str(exc))

    def _run(
        self,
        job: ClaimedJob,
        analysis: Analysis[Any],
        request: AnalysisRequest,
        files: Mapping[str, list[str]],
        kinds: Mapping[str, SeriesKind],
        inputs_key: str,
    ) -> None:
        """The one road: open the inputs (slides; other series as files), run, report."""
        started = time.perf_counter()
        try:
            with ExitStack() as stack:
                slides = {
                    key: stack.enter_context(
                        SlideSource("dicom", tuple(Path(p) for p in paths), label=key).open()
                    )
                    for key, paths in files.items()
                    if kinds[key] is SeriesKind.SLIDE
                }
                others = {
                    key: SeriesInput(key, kinds[key], tuple(Path(p) for p in paths))
                    for key, paths in files.items()
                    if kinds[key] is not SeriesKind.SLIDE
                }
                result = analysis.run(request, {**slides, **others}, job.study_uid)
                thumbnails = {key: read_thumbnail(slide) for key, slide in slides.items()}
            manifest: ResultManifest | None = None  # None: the row's stands (unchanged)
            try:
                _, path, manifest = self.reports.write(
                    job.study_uid,
                    job.job_key,
                    analysis,
                    result,
                    files,
                    thumbnails,
                )
            except ResultUnchangedError as unchanged:
                path = self._unchanged(job, unchanged)
        except PairingError as exc:
            raise PermanentJobError(f"mismatched-blocks: {exc}") from exc
        except (MixedPatientsError, ResultWithheldError) as exc:
            raise self._withheld(job, exc) from exc
        except IhgampError as exc:
            raise PermanentJobError(str(exc)) from exc
        outcome = analysis.outcome(result)
        self.results.record(
            job.study_uid,
            job.job_key,
            str(outcome.analysis),
            str(path),
            outcome.call,
            outcome.value,
            str(outcome.path) if outcome.path else None,
            outcome.model_key,
            outcome.demo,
            inputs_key,
            manifest,
        )
        logger.info(
            "analysis scored",
            extra={
                "study_uid": job.study_uid,
                "analysis": str(outcome.analysis),
                "job": job.job_key,
                "call": outcome.call,
                "path": str(outcome.path) if outcome.path else None,
                "qc_flags": list(outcome.qc_flags),
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
