"""Routing decisions and per-analysis results in the catalog.

A study's routing decision (:meth:`AnalysisStore.set_routing`) says which analyses run on
which slides, what was refused and why, or that no analysis applies; the job store
creates one job per request of it. Each request's latest result is one
``analysis_results`` row (call, headline value, modality path, and its output manifest:
what it issued), which the next result of the same request supersedes. Study states are
not written here.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ..errors import CatalogError
from .catalog import CatalogStore, utcnow
from .manifest import ResultManifest
from .schema import AnalysisResult, Instance, Series, Study

__all__ = ["AnalysisResultView", "AnalysisStore"]


@dataclass(frozen=True)
class AnalysisResultView:
    """The latest result of one analysis request of a study."""

    job_key: str
    analysis: str
    result_path: str
    call: str | None
    value: float | None
    modality_path: str | None
    model_key: str | None
    demo: bool
    scored_at: dt.datetime
    inputs_key: str | None = None
    outputs: ResultManifest | None = None


def _manifest(text: str | None) -> ResultManifest | None:
    if not text:
        return None
    try:
        return ResultManifest.from_dict(json.loads(text))
    except (ValueError, TypeError, KeyError):
        return None


class AnalysisStore(CatalogStore):
    """Routing decisions and analysis results of studies."""

    def _study(self, s: Any, study_uid: str) -> Study:
        study = s.scalars(select(Study).where(Study.study_uid == study_uid)).first()
        if study is None:
            raise CatalogError(f"no study {study_uid} in the catalog")
        return study  # type: ignore[no-any-return]

    def set_routing(self, study_uid: str, decision: dict[str, Any] | None) -> None:
        """Store the study's routing decision (``None``: not routed, every slide in one job)."""
        with self.catalog.session() as s:
            study = self._study(s, study_uid)
            study.routing = None if decision is None else json.dumps(decision, sort_keys=True)

    def routing(self, study_uid: str) -> dict[str, Any] | None:
        """The study's routing decision, if it was routed."""
        with self.catalog.session() as s:
            text = self._study(s, study_uid).routing
        return None if not text else dict(json.loads(text))

    def record(
        self,
        study_uid: str,
        job_key: str,
        analysis: str,
        result_path: str,
        call: str | None,
        value: float | None,
        modality_path: str | None,
        model_key: str | None,
        demo: bool,
        inputs_key: str | None = None,
        outputs: ResultManifest | None = None,
    ) -> None:
        """Store (or replace) the latest result of one request.

        ``inputs_key`` identifies the model, its options and the exact input files: a
        later job with the same key need not run (:meth:`input_files`). ``outputs`` is
        what the result issued; ``None`` keeps the row's (a result equal to the one
        issued). The study's ``scored_at`` becomes the time of its latest result.
        """
        with self.catalog.session() as s:
            study = self._study(s, study_uid)
            row = s.scalars(
                select(AnalysisResult).where(
                    AnalysisResult.study_id == study.id, AnalysisResult.job_key == job_key
                )
            ).first()
            if row is None:
                row = AnalysisResult(study_id=study.id, job_key=job_key)
                s.add(row)
            row.analysis = analysis
            row.result_path = result_path
            row.call = None if call is None else call[:32]
            row.value = value
            row.modality_path = modality_path
            row.model_key = None if model_key is None else model_key[:160]
            row.demo = demo
            row.scored_at = study.scored_at = utcnow()
            row.inputs_key = inputs_key
            if outputs is not None:
                row.outputs = json.dumps(outputs.to_dict(), sort_keys=True)

    def results(self, study_uid: str) -> list[AnalysisResultView]:
        """The study's latest results, one per request, by key."""
        return self.results_of([study_uid]).get(study_uid, [])

    def results_of(self, study_uids: list[str]) -> dict[str, list[AnalysisResultView]]:
        """The latest results of several studies (one query), by study, then by key."""
        if not study_uids:
            return {}
        with self.catalog.session() as s:
            rows = s.execute(
                select(Study.study_uid, AnalysisResult)
                .join(AnalysisResult, AnalysisResult.study_id == Study.id)
                .where(Study.study_uid.in_(study_uids))
                .order_by(Study.study_uid, AnalysisResult.job_key)
            ).all()
            out: dict[str, list[AnalysisResultView]] = {}
            for uid, r in rows:
                out.setdefault(uid, []).append(
                    AnalysisResultView(
                        r.job_key,
                        r.analysis,
                        r.result_path,
                        r.call,
                        r.value,
                        r.modality_path,
                        r.model_key,
                        r.demo,
                        r.scored_at,
                        r.inputs_key,
                        _manifest(r.outputs),
                    )
                )
            return out

    def result(self, study_uid: str, job_key: str) -> AnalysisResultView | None:
        """The latest result of one request, if any."""
        return next((r for r in self.results(study_uid) if r.job_key == job_key), None)

    def input_files(self, study_uid: str, series_uids: list[str]) -> list[str]:
        """``<SOP Instance UID>:<SHA-256>`` of the current instances of these series, sorted."""
        with self.catalog.session() as s:
            rows = s.execute(
                select(Instance.sop_instance_uid, Instance.sha256)
                .join(Series, Series.id == Instance.series_id)
                .join(Study, Study.id == Series.study_id)
                .where(
                    Study.study_uid == study_uid,
                    Series.series_uid.in_(series_uids),
                    Instance.current.is_(True),
                )
            ).all()
        return sorted(f"{uid}:{sha}" for uid, sha in rows)

    def flag_review(self, study_uid: str, reason: str | None) -> None:
        """Flag the study for a person's review (a result was withheld); None clears it."""
        with self.catalog.session() as s:
            study = self._study(s, study_uid)
            study.review_reason = None if reason is None else reason[:2000]

    def review_reason(self, study_uid: str) -> str | None:
        """Why the study awaits review, if it does."""
        with self.catalog.session() as s:
            return self._study(s, study_uid).review_reason
