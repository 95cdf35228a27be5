"""A scored and reported study in a catalog + outbox, for dispatch and web tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

from gateway.catalog import AnalysisStore, Catalog, InstanceRecord, StudyState
from gateway.config import Settings
from gateway.dispatch.dispatcher import Dispatcher
from gateway.outbox import Outbox
from gateway.report.writer import ReportWriter
from ihgamp_core.hrd.analysis import HrdAnalysis
from ihgamp_core.hrd.engine import Engine, ScoringOptions
from ihgamp_core.slide import discover_slides
from ihgamp_core.slide.resample import read_thumbnail
from ihgamp_core.synthetic.samples import SampleCase


@dataclass
class Reported:
    settings: Settings
    catalog: Catalog
    outbox: Outbox
    study_uid: str
    report: Any  # the AnalysisReport
    folder: Path  # the result's folder (<outbox>/<study>/hrd)
    result: Any = None  # the engine's CaseResult


def make_reported(
    tmp_path: Path, engine: Engine, samples_root: Path, case: SampleCase, settings: Settings
) -> Reported:
    catalog = Catalog(settings.catalog.url)
    outbox = Outbox(settings.storage.outbox_dir)
    files: dict[str, list[str]] = {}
    for path in sorted((samples_root / "dicom" / case.case_id).rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        files.setdefault(str(ds.SeriesInstanceUID), []).append(str(path))
        catalog.record_instance(
            InstanceRecord(
                str(ds.StudyInstanceUID),
                str(ds.SeriesInstanceUID),
                str(ds.SOPInstanceUID),
                str(ds.SOPClassUID),
                str(ds.file_meta.TransferSyntaxUID),
                "SM",
                None,
                "VOLUME",
                0.5,
                str(path),
                1,
                str(ds.SOPInstanceUID)[:64].ljust(64, "0"),
            ),
            None,
        )
    study_uid = case.identity["study_instance_uid"]
    catalog.transition(study_uid, StudyState.COMPLETE)
    with ExitStack() as stack:
        sources = discover_slides([samples_root / "dicom" / case.case_id])
        slides = [stack.enter_context(s.open()) for s in sources]
        result = engine.score_case(slides, study_uid, ScoringOptions(max_tiles=2, min_tiles=1))
        thumbs = {str(sl.info.series_instance_uid): read_thumbnail(sl, 256) for sl in slides}
    analysis = HrdAnalysis(engine, ScoringOptions(max_tiles=2, min_tiles=1))
    ordered = {k: files[k] for k in sorted(files)}
    report, path, manifest = ReportWriter(catalog, outbox, settings).write(
        study_uid, "hrd", analysis, result, ordered, thumbs
    )
    outcome = report.outcome
    AnalysisStore(catalog).record(
        study_uid,
        "hrd",
        "hrd",
        str(path),
        outcome.call,
        outcome.value,
        None,
        outcome.model_key,
        outcome.demo,
        None,
        manifest,
    )
    return Reported(settings, catalog, outbox, study_uid, report, path.parent, result)


def dciodvfy(path: Path) -> tuple[list[str], str]:
    """dicom3tools' IOD validator on a file: its ``Error`` lines and its whole output."""
    exe = shutil.which("dciodvfy")
    assert exe, "dicom3tools (dciodvfy) is required: apt-get install dicom3tools"
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    text = proc.stdout + proc.stderr
    return [line for line in text.splitlines() if line.startswith("Error")], text


def dispatch_until(
    dispatcher: Dispatcher, name: str, predicate: Callable[[], object], timeout: float = 30
) -> None:
    """Run destination ``name``'s attempts until ``predicate()`` holds (or time out)."""
    destination = next(d for d in dispatcher.destinations if d.name == name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dispatcher.run_once(destination)
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(name)
