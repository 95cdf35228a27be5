"""``ihgamp status``, ``ihgamp rescore`` and ``ihgamp complete``: operating on the catalog.

These commands work next to a running gateway: they read and write the same catalog,
and the gateway's workers pick up queued jobs within ``worker.poll_interval_s``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..catalog import (
    AnalysisResultView,
    AnalysisStore,
    Catalog,
    JobState,
    JobStore,
    StudySnapshot,
    StudyState,
)
from ..catalog.deliveries import DeliveryStore
from ..catalog.leases import LEADER_LEASE, NamedLease
from ..catalog.schema import DeliveryState
from ..config import Settings, load_settings
from ..parts import build_core, open_catalog
from .common import console, handle_errors
from .serve import ConfigOption

__all__ = ["complete", "redispatch", "rescore", "status"]


def _open(config: Path | None) -> tuple[Settings, Catalog]:
    settings = load_settings(config)
    return settings, open_catalog(settings)


def _age(when: dt.datetime | None, now: dt.datetime) -> str:
    if when is None:
        return "-"
    seconds = int((now - when).total_seconds())
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return when.strftime("%Y-%m-%d %H:%M")


_STATE_STYLE = {
    StudyState.RECEIVING: "cyan",
    StudyState.COMPLETE: "blue",
    StudyState.QUEUED: "blue",
    StudyState.SCORING: "magenta",
    StudyState.SCORED: "green",
    StudyState.FAILED: "bold red",
    StudyState.IGNORED: "dim",
}


def _analyses_text(results: list[AnalysisResultView]) -> str:
    """``her2:A1 her2-2+ 0.710 (dual, DEMO); hrd hrd-unlikely 0.231`` for the table."""
    parts = []
    for r in results:
        extra = ", ".join(x for x in (r.modality_path, "DEMO" if r.demo else None) if x)
        value = "" if r.value is None else f" {r.value:.3f}"
        parts.append(f"{r.job_key} {r.call or '-'}{value}" + (f" ({extra})" if extra else ""))
    return "; ".join(parts) or "-"


def _note(s: StudySnapshot, routing: dict[str, Any] | None) -> str:
    """The review flag and the state's reason, else the refusals of the study's routing."""
    review = f"REVIEW: {s.review_reason}; " if s.review_reason else ""
    if s.state_reason:
        return review + s.state_reason
    refusals = (routing or {}).get("refusals") or []
    return review + "; ".join(
        f"refused: {r['kind']} ({r.get('analysis') or 'all'})" for r in refusals
    )


def _study_json(
    s: StudySnapshot,
    results: list[AnalysisResultView] | None = None,
    routing: dict[str, Any] | None = None,
) -> dict[str, object]:
    return {
        "study_uid": s.study_uid,
        "accession_number": s.accession_number,
        "state": s.state,
        "reason": s.state_reason,
        "review": s.review_reason,
        "forced": s.forced,
        "series": len(s.series),
        "instances": sum(x.instance_count for x in s.series),
        "first_received_at": s.first_received_at.isoformat(),
        "last_received_at": s.last_received_at.isoformat(),
        "completed_at": s.completed_at.isoformat() if s.completed_at else None,
        "scored_at": s.scored_at.isoformat() if s.scored_at else None,
        "analyses": [
            {
                "job_key": r.job_key,
                "analysis": r.analysis,
                "call": r.call,
                "value": r.value,
                "modality_path": r.modality_path,
                "demo": r.demo,
                "result": r.result_path,
            }
            for r in results or []
        ],
        "no_analysis_applies": bool((routing or {}).get("no_analysis_applies")),
        "refusals": (routing or {}).get("refusals", []),
    }


@handle_errors
def status(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    limit: Annotated[int, typer.Option(help="Show at most this many studies.")] = 50,
    state: Annotated[
        list[str] | None, typer.Option(help="Only studies in this state (repeatable).")
    ] = None,
) -> None:
    """Show studies (state, timings, each analysis' result) and failed jobs with their errors.

    A study no enabled analysis applies to is ignored with the reason "no analysis
    applies"; refused slides (unknown stain, IHC without its H&E, mismatched blocks) are
    named in the study's note.
    """
    _, catalog = _open(config)
    try:
        studies = catalog.studies(states=state, limit=limit)
        store = AnalysisStore(catalog)
        results = {x.study_uid: store.results(x.study_uid) for x in studies}
        routings = {x.study_uid: store.routing(x.study_uid) for x in studies}
        recent = JobStore(catalog).jobs(limit=500)
        jobs = [j for j in recent if j.state == JobState.FAILED]
        running = [j for j in recent if j.state == JobState.RUNNING]
        leader = NamedLease(catalog, LEADER_LEASE, "", 0).holder()
        counts = catalog.counts()
        open_deliveries = DeliveryStore(catalog).deliveries(
            states=[DeliveryState.PENDING, DeliveryState.DEAD_LETTER], limit=200
        )
    finally:
        catalog.close()
    if as_json:
        print(
            json.dumps(
                {
                    "counts": counts,
                    "completion_leader": leader[0] if leader else None,
                    "running_jobs": [
                        {
                            "job_id": j.job_id,
                            "study_uid": j.study_uid,
                            "attempt": j.attempts,
                            "owner": j.lease_owner,
                            "lease_expires_at": (
                                j.lease_expires_at.isoformat() if j.lease_expires_at else None
                            ),
                        }
                        for j in running
                    ],
                    "studies": [
                        _study_json(s, results[s.study_uid], routings[s.study_uid]) for s in studies
                    ],
                    "failed_jobs": [
                        {
                            "job_id": j.job_id,
                            "study_uid": j.study_uid,
                            "attempts": j.attempts,
                            "error": j.last_error,
                        }
                        for j in jobs
                    ],
                    "deliveries": [
                        {
                            "study_uid": d.study_uid,
                            "destination": d.destination,
                            "state": d.state,
                            "attempts": d.attempts,
                            "error": d.last_error,
                        }
                        for d in open_deliveries
                    ],
                },
                indent=2,
            )
        )
        return
    now = dt.datetime.now(dt.UTC)
    table = Table(title="Studies (newest first)")
    for column in (
        "Study UID",
        "Accession",
        "State",
        "Series",
        "Instances",
        "Last received",
        "Completed",
        "Scored",
        "Calls (every analysis)",
        "Note",
    ):
        table.add_column(column, overflow="fold")
    # Every text that a sender or a remote peer chose (UIDs, accession numbers, reasons,
    # errors) is escaped: "[/]" in an AccessionNumber is text, not rich markup.
    for s in studies:
        style = _STATE_STYLE.get(StudyState(s.state), "")
        table.add_row(
            escape(s.study_uid),
            escape(s.accession_number or "-"),
            f"[{style}]{escape(s.state)}[/]",
            str(len(s.series)),
            str(sum(x.instance_count for x in s.series)),
            _age(s.last_received_at, now),
            _age(s.completed_at, now),
            _age(s.scored_at, now),
            escape(_analyses_text(results[s.study_uid])),
            escape(_note(s, routings[s.study_uid])),
        )
    console.print(table)
    console.print(
        escape("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no studies yet")
    )
    if leader is not None:
        console.print(f"completion leader: {escape(leader[0])} (lease until {leader[1]:%H:%M:%S})")
    if running:
        held = Table(title="Jobs being scored (node:process:token holding the lease)")
        for column in ("Job", "Study UID", "Attempt", "Worker", "Lease until"):
            held.add_column(column, overflow="fold")
        for j in running:
            until = j.lease_expires_at.strftime("%H:%M:%S") if j.lease_expires_at else "-"
            held.add_row(
                str(j.job_id), j.study_uid, str(j.attempts), escape(j.lease_owner or "-"), until
            )
        console.print(held)
    if jobs:
        failed = Table(title="Failed jobs")
        for column in ("Job", "Study UID", "Attempts", "Last error"):
            failed.add_column(column, overflow="fold")
        for j in jobs:
            failed.add_row(
                str(j.job_id),
                escape(j.study_uid),
                f"{j.attempts}/{j.max_attempts}",
                escape(j.last_error or ""),
            )
        console.print(failed)
    if open_deliveries:
        pending = Table(title="Deliveries not yet delivered (dead-letter: run `ihgamp redispatch`)")
        for column in ("Study UID", "Destination", "State", "Attempts", "Next attempt", "Error"):
            pending.add_column(column, overflow="fold")
        for d in open_deliveries:
            style = "bold red" if d.state == DeliveryState.DEAD_LETTER else "yellow"
            next_at = d.next_attempt_at.strftime("%H:%M:%S")
            if d.state == DeliveryState.DEAD_LETTER:
                next_at = "-"
            attempts = f"{d.attempts}/{d.max_attempts}"
            state_text = f"[{style}]{escape(d.state)}[/]"
            pending.add_row(
                escape(d.study_uid),
                escape(d.destination),
                state_text,
                attempts,
                next_at,
                escape(d.last_error or ""),
            )
        console.print(pending)


@handle_errors
def redispatch(
    config: ConfigOption = None,
    study: Annotated[str | None, typer.Option(help="Only this Study Instance UID.")] = None,
    destination: Annotated[str | None, typer.Option(help="Only this destination.")] = None,
    include_delivered: Annotated[
        bool, typer.Option("--include-delivered", help="Also send delivered results again.")
    ] = False,
) -> None:
    """Send dead-letter deliveries again (same SOP Instance UIDs and FHIR identifiers).

    Each delivery gets the current ``dispatch.max_attempts`` as its new attempt budget.
    """
    settings, catalog = _open(config)
    try:
        count = DeliveryStore(catalog).redispatch(
            study, destination, include_delivered, settings.dispatch.max_attempts
        )
    finally:
        catalog.close()
    console.print(f"{count} deliveries pending again; the running gateway sends them")


@handle_errors
def rescore(
    study_uid: Annotated[str, typer.Argument(help="Study Instance UID to score again.")],
    config: ConfigOption = None,
) -> None:
    """Route a study again and queue its analyses (after a failure, a fix or a new model)."""
    core = build_core(load_settings(config))
    try:
        core.lifecycle.rescore(study_uid)
        study = core.catalog.study(study_uid)
    finally:
        core.close()
    state = study.state if study is not None else "unknown"
    reason = f": {study.state_reason}" if study is not None and study.state_reason else ""
    console.print(f"study {escape(study_uid)} {escape(state)}{escape(reason)}")


@handle_errors
def complete(
    study_uid: Annotated[str, typer.Argument(help="Study Instance UID.")],
    force: Annotated[
        bool, typer.Option("--force", help="Required: complete it now, whatever its timers say.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Force completion of a study that is still receiving, and queue it for scoring."""
    if not force:
        raise typer.BadParameter("add --force to complete a study before its timers do")
    core = build_core(load_settings(config))
    try:
        core.lifecycle.force(study_uid)
        final = core.catalog.study(study_uid)
    finally:
        core.close()
    console.print(f"study {escape(study_uid)}: {final.state if final else '?'}")
