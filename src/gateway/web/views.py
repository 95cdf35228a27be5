"""What the API and the status page show of a study: one read model, two serialisers.

A study's results are its catalog rows, one per analysis request, with their output
manifests (call, value, triage, QC flags, the files each issued); no page or API answer
opens a result file.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from .. import analyses
from ..catalog import AnalysisResultView, AnalysisStore, Catalog, JobStore, JobView, StudySnapshot
from ..catalog.deliveries import DeliveryStore, DeliveryView
from ..spool import valid_uid

__all__ = [
    "HEATMAP_RE",
    "ANALYSIS_FOLDER_RE",
    "AnalysisMaps",
    "InvalidStudyUid",
    "ModelSummary",
    "StudyDetail",
    "TimelineEvent",
    "analysis_row",
    "checked_study_uid",
    "analysis_maps",
    "detail_dict",
    "study_detail",
    "study_row",
]

HEATMAP_RE = re.compile(r"^heatmap-[1-9][0-9]{0,3}\.png$")
#: The outbox sub-folder of an analysis request (``outbox.job_folder`` of its key:
#: ``<analysis>`` or ``<analysis>-<block>``).
ANALYSIS_FOLDER_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}(-[A-Za-z0-9._-]{1,64})?$")


class InvalidStudyUid(ValueError):
    """A path parameter that is not a DICOM UID."""


def checked_study_uid(study_uid: str) -> str:
    """``study_uid`` if it is a syntactically valid DICOM UID.

    Raises
    ------
    InvalidStudyUid
        Otherwise (answered with 422 by the API, 404 by the page).
    """
    if not valid_uid(study_uid):
        raise InvalidStudyUid("study_uid: not a DICOM UID (digits and dots, at most 64)")
    return study_uid


@dataclass(frozen=True)
class ModelSummary:
    """Which model produced a result (or is loaded), for people."""

    display_name: str
    version: str
    backbone: str
    demo: bool
    intended_use: str


@dataclass(frozen=True)
class AnalysisMaps:
    """The PNG maps of one analysis request's result, with its analysis' colour key.

    Parameters
    ----------
    analysis : str
        The analysis' name.
    title : str
        How people call it (its registry entry's title).
    job_key : str
        The request.
    names : list of str
        ``<request folder>/heatmap-<n>.png`` in the study's outbox folder.
    legend : list of tuple
        ``(label, "#rrggbb")`` of its classes; empty for continuous maps.
    """

    analysis: str
    title: str
    job_key: str
    names: list[str]
    legend: list[tuple[str, str]] = field(default_factory=list)


def analysis_maps(rows: list[AnalysisResultView]) -> list[AnalysisMaps]:
    """The PNG maps of the study's analysis results, each in its request's folder.

    Read from each result's output manifest (its folder and the files it wrote), never by
    guessing folder names.
    """
    out = []
    for row in rows:
        manifest = row.outputs
        if manifest is None or not ANALYSIS_FOLDER_RE.match(manifest.folder):
            continue  # a folder this gateway does not write (an old catalog's)
        names = [f"{manifest.folder}/{f}" for f in manifest.files if HEATMAP_RE.match(f)]
        if not names:
            continue
        try:
            item = analyses.entry(row.analysis)
        except KeyError:  # a result of an analysis this gateway no longer registers
            title, legend = row.analysis, []
        else:
            title, legend = item.title, item.legend() if item.legend else []
        out.append(AnalysisMaps(row.analysis, title, row.job_key, names, legend))
    return out


@dataclass(frozen=True)
class TimelineEvent:
    """One dated event in a study's life."""

    at: dt.datetime
    event: str
    detail: str = ""


@dataclass(frozen=True)
class StudyDetail:
    """Everything the study page and ``GET /api/studies/{uid}`` show."""

    study: StudySnapshot
    jobs: list[JobView]
    deliveries: list[DeliveryView]
    timeline: list[TimelineEvent] = field(default_factory=list)
    routing: dict[str, Any] | None = None
    analyses: list[dict[str, Any]] = field(default_factory=list)
    maps: list[AnalysisMaps] = field(default_factory=list)
    results: list[AnalysisResultView] = field(default_factory=list)


def analysis_row(row: AnalysisResultView) -> dict[str, Any]:
    """One analysis result of a study, from its catalog row and output manifest."""
    manifest = row.outputs
    return {
        "job_key": row.job_key,
        "analysis": row.analysis,
        "call": row.call,
        "value": row.value,
        "modality_path": row.modality_path,
        "demo": row.demo,
        "scored_at": row.scored_at.isoformat(),
        "triage": None
        if manifest is None
        else {
            "category": manifest.triage_category,
            "text": manifest.triage_text,
            "statement": manifest.triage_statement,
        },
        "qc_flags": [] if manifest is None else list(manifest.qc_flags),
        "notes": [] if manifest is None else list(manifest.notes),
    }


def _timeline(
    study: StudySnapshot,
    jobs: list[JobView],
    deliveries: list[DeliveryView],
    results: list[AnalysisResultView],
) -> list[TimelineEvent]:
    events = [
        TimelineEvent(study.first_received_at, "first instance received"),
        TimelineEvent(study.last_received_at, "last instance received"),
    ]
    if study.completed_at:
        reason = "forced" if study.forced else "timers"
        events.append(TimelineEvent(study.completed_at, "complete", reason))
    for job in jobs:
        if job.created_at:
            events.append(TimelineEvent(job.created_at, f"job {job.job_id} queued", job.job_key))
        if job.finished_at:
            detail = (job.last_error or "") if job.state == "failed" else ""
            events.append(TimelineEvent(job.finished_at, f"job {job.job_id} {job.state}", detail))
    for r in results:
        events.append(TimelineEvent(r.scored_at, f"{r.job_key} scored", r.call or ""))
    for d in deliveries:
        if d.created_at:
            events.append(TimelineEvent(d.created_at, f"delivery to {d.destination} queued"))
        if d.delivered_at:
            events.append(TimelineEvent(d.delivered_at, f"delivered to {d.destination}"))
        elif d.state == "dead-letter":
            events.append(
                TimelineEvent(
                    d.next_attempt_at,
                    f"delivery to {d.destination} dead-letter",
                    f"{d.attempts}/{d.max_attempts} attempts: {d.last_error or ''}",
                )
            )
    return sorted(events, key=lambda e: e.at)


def study_detail(catalog: Catalog, study_uid: str) -> StudyDetail | None:
    """The study's detail, or None if the catalog does not know it."""
    study = catalog.study(checked_study_uid(study_uid))
    if study is None:
        return None
    jobs = JobStore(catalog).jobs(limit=50, study_uid=study_uid)
    deliveries = DeliveryStore(catalog).deliveries(study_uid=study_uid, limit=100)
    store = AnalysisStore(catalog)
    rows = store.results(study_uid)
    return StudyDetail(
        study,
        jobs,
        deliveries,
        _timeline(study, jobs, deliveries, rows),
        store.routing(study_uid),
        [analysis_row(r) for r in rows],
        analysis_maps(rows),
        rows,
    )


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat() if when else None


def study_row(
    study: StudySnapshot, deliveries: list[DeliveryView], results: list[AnalysisResultView]
) -> dict[str, Any]:
    """A study as ``GET /api/studies`` lists it: one call per analysis request."""
    return {
        "study_uid": study.study_uid,
        "accession_number": study.accession_number,
        "state": study.state,
        "reason": study.state_reason,
        "review": study.review_reason,
        "calls": [
            {
                "job_key": r.job_key,
                "analysis": r.analysis,
                "call": r.call,
                "value": r.value,
                "demo": r.demo,
            }
            for r in results
        ],
        "last_received_at": study.last_received_at.isoformat(),
        "scored_at": _iso(study.scored_at),
        "deliveries": [
            {
                "destination": d.destination,
                "state": d.state,
                "attempts": d.attempts,
                "max_attempts": d.max_attempts,
                "error": d.last_error,
            }
            for d in deliveries
        ],
    }


def detail_dict(detail: StudyDetail) -> dict[str, Any]:
    """A study as ``GET /api/studies/{uid}`` shows it."""
    out = study_row(detail.study, detail.deliveries, detail.results)
    out["jobs"] = [
        {
            "job_id": j.job_id,
            "kind": j.kind,
            "analysis": j.analysis,
            "job_key": j.job_key,
            "state": j.state,
            "attempts": j.attempts,
            "max_attempts": j.max_attempts,
            "error": j.last_error,
        }
        for j in detail.jobs
    ]
    out["routing"] = detail.routing
    out["analyses"] = detail.analyses
    out["analysis_maps"] = [
        {
            "analysis": m.analysis,
            "job_key": m.job_key,
            "maps": [f"/studies/{detail.study.study_uid}/{name}" for name in m.names],
            "legend": [{"label": label, "colour": colour} for label, colour in m.legend],
        }
        for m in detail.maps
    ]
    out["timeline"] = [
        {"at": e.at.isoformat(), "event": e.event, "detail": e.detail} for e in detail.timeline
    ]
    return out
