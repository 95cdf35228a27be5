"""``ihgamp find`` and ``ihgamp retrieve``: query and pull studies from a configured PACS.

``retrieve --method move`` needs the gateway (``ihgamp serve``) running with the same
configuration: the PACS sends the study to its DICOM listener. ``get`` and ``dicomweb``
receive in this process and write into the same spool and catalog; the running gateway's
workers then score the study.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..catalog import Catalog
from ..config import Settings, load_settings
from ..parts import build_core
from ..receive.store import InstanceStore
from ..retrieve import RetrieveService
from ..spool import Spool
from .common import console, err_console, handle_errors, setup_logging
from .serve import ConfigOption

__all__ = ["find", "retrieve"]

PacsOption = Annotated[str, typer.Option("--pacs", help="Name of a [[pacs]] entry.")]


def _service(config: Path | None) -> tuple[Settings, Catalog, RetrieveService]:
    settings = load_settings(config)
    core = build_core(settings)
    spool = Spool(
        settings.storage.spool_dir,
        settings.storage.min_free_mb * 2**20,
        node=f"{settings.node_name()}-cli-{os.getpid()}",
    )
    service = RetrieveService(
        settings,
        core.catalog,
        InstanceStore.for_settings(settings.dicom, core.catalog, spool),
        core.lifecycle,
    )
    return settings, core.catalog, service


@handle_errors
def find(
    pacs: PacsOption,
    config: ConfigOption = None,
    patient_id: Annotated[str | None, typer.Option(help="Patient ID.")] = None,
    accession: Annotated[str | None, typer.Option(help="Accession number.")] = None,
    study_date: Annotated[
        str | None, typer.Option(help="Date or range: 20260105, 20260101-20260131, 20260101-.")
    ] = None,
    modality: Annotated[str | None, typer.Option(help="Modalities in study (SM = slides).")] = None,
    series: Annotated[bool, typer.Option(help="Also list each study's series.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Search a PACS for studies (C-FIND at study level, Study Root; QIDO-RS for DICOMweb)."""
    setup_logging()
    settings, catalog, service = _service(config)
    try:
        matches = service.find(
            pacs,
            patient_id=patient_id,
            accession_number=accession,
            study_date=study_date,
            modality=modality,
        )
        series_of = {}
        if series:
            from ..retrieve import find_series

            node = settings.pacs_node(pacs)
            for m in matches:
                series_of[m.study_uid] = find_series(node, settings.dicom.ae_title, m.study_uid)
    finally:
        catalog.close()
    if as_json:
        print(
            json.dumps(
                [
                    {**asdict(m), "series": [asdict(s) for s in series_of.get(m.study_uid, [])]}
                    for m in matches
                ],
                indent=2,
            )
        )
        return
    table = Table(title=f"Studies on {pacs}")
    for column in (
        "Study UID",
        "Accession",
        "Patient ID",
        "Date",
        "Modalities",
        "Series",
        "Instances",
        "Description",
    ):
        table.add_column(column, overflow="fold")
    for m in matches:
        table.add_row(
            m.study_uid,
            m.accession_number or "",
            m.patient_id or "",
            m.study_date or "",
            "/".join(m.modalities),
            str(m.series or ""),
            str(m.instances or ""),
            m.description or "",
        )
        for s in series_of.get(m.study_uid, []):
            table.add_row(
                f"  series {s.series_uid}",
                "",
                "",
                "",
                s.modality or "",
                "",
                str(s.instances or ""),
                s.description or "",
            )
    console.print(table)
    console.print(f"{len(matches)} stud{'y' if len(matches) == 1 else 'ies'}")


@handle_errors
def retrieve(
    pacs: PacsOption,
    config: ConfigOption = None,
    accession: Annotated[str | None, typer.Option(help="Accession number.")] = None,
    study_uid: Annotated[str | None, typer.Option(help="Study Instance UID.")] = None,
    method: Annotated[
        str | None, typer.Option(help="move, get or dicomweb (default: the PACS's setting).")
    ] = None,
) -> None:
    """Pull a study from a PACS; it is scored once every instance has arrived.

    Partial failures are listed per instance and the study is held (not scored) until a
    retry brings the rest or an operator runs `ihgamp complete STUDY_UID --force`.
    """
    setup_logging()
    if (accession is None) == (study_uid is None):
        raise typer.BadParameter("give exactly one of --accession and --study-uid")
    if method is not None and method not in ("move", "get", "dicomweb"):
        raise typer.BadParameter("--method must be move, get or dicomweb")
    _, catalog, service = _service(config)
    failed_any = False
    try:
        uids = [study_uid] if study_uid else service.study_uids(pacs, str(accession))
        for uid in uids:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} instances, {task.fields[failed]} failed"),
                TimeElapsedColumn(),
                console=err_console,
            ) as bar:
                task = bar.add_task(f"retrieving {uid[:24]}...", total=None, failed=0)

                def progress(
                    done: int,
                    failed: int,
                    warning: int,
                    remaining: int,
                    task: TaskID = task,
                    bar: Progress = bar,
                ) -> None:
                    bar.update(
                        task,
                        completed=done + failed + warning,
                        total=done + failed + warning + remaining,
                        failed=failed,
                    )

                outcome = service.retrieve(pacs, uid, method, progress, accession)
            report = outcome.report
            console.print(
                f"{uid}: {report.completed} instance(s) retrieved by {report.method}, "
                f"{report.failed} failed; study {outcome.state}"
                + (" and queued for scoring" if outcome.queued else "")
            )
            if outcome.note:
                console.print(f"  {outcome.note}")
            for failed in outcome.failed_instances:
                console.print(f"  [red]failed instance[/] {failed}")
            failed_any = failed_any or not report.complete
    finally:
        catalog.close()
    if failed_any:
        raise typer.Exit(3)
