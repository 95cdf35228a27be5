"""HRD under the analysis contract gives exactly what Engine.score_case + build_reports give."""

from __future__ import annotations

import copy
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pydicom
import pytest

from ihgamp_core.analysis import (
    AnalysisName,
    AnalysisSpec,
    ReportOptions,
    route,
    series_metadata_from_dataset,
)
from ihgamp_core.errors import ParameterError
from ihgamp_core.her2.analysis import HER2_APPLICABILITY
from ihgamp_core.hrd.analysis import HrdAnalysis, hrd_document
from ihgamp_core.hrd.engine import Engine, ScoringOptions
from ihgamp_core.hrd.reports import build_reports
from ihgamp_core.hrd.result import result_to_dict
from ihgamp_core.report import ReportContext
from ihgamp_core.slide import DicomSlide

pytestmark = pytest.mark.slow

_VOLATILE = (
    "ContentDate",
    "ContentTime",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "SeriesDate",
    "SeriesTime",
    "DimensionOrganizationUID",  # highdicom draws a random one per object
)


def _stable(ds: pydicom.Dataset) -> str:
    """The dataset as text without creation dates and times and highdicom's random UIDs."""
    ds = copy.deepcopy(ds)

    def strip(item: pydicom.Dataset) -> None:
        for element in list(item):
            if element.VR == "DT" or element.keyword in _VOLATILE:
                del item[element.tag]
            elif element.VR == "SQ":
                for child in element.value:
                    strip(child)

    strip(ds)
    return str(ds)


def _bundle(bundle: Any) -> dict[str, Any]:
    data: dict[str, Any] = bundle.model_dump(mode="json", exclude_none=True)
    for entry in data["entry"]:
        entry["resource"].pop("issued", None)
        entry["resource"].pop("recorded", None)
    return data


def _result(result: Any) -> dict[str, Any]:
    data: dict[str, Any] = result_to_dict(result)
    data.pop("timings")
    data.pop("created")
    return data


def test_hrd_analysis_result_sr_fhir_equal_the_engine_path(
    engine: Engine, samples_root: Path
) -> None:
    folder = samples_root / "dicom" / "DEMO-002"
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        files.setdefault(str(ds.SeriesInstanceUID), []).append(path)
    metadata = [
        series_metadata_from_dataset(pydicom.dcmread(paths[0], stop_before_pixels=True))
        for paths in files.values()
    ]
    analysis = HrdAnalysis(engine, ScoringOptions(max_tiles=2, min_tiles=1))
    her2 = AnalysisSpec(AnalysisName.HER2, HER2_APPLICABILITY)
    decision = route(metadata, [her2, analysis.spec])
    (request,) = decision.requests  # no body part: HER2 skipped, HRD on both slides
    assert request.analysis is AnalysisName.HRD and set(request.slide_keys()) == set(files)
    assert [s.analysis for s in decision.skipped] == [AnalysisName.HER2]

    with ExitStack() as stack:
        slides = {
            key: stack.enter_context(DicomSlide(files[key], source=key))
            for key in request.slide_keys()
        }
        via_contract = analysis.run(request, slides, "DEMO-002")
        ordered = [slides[k] for k in request.slide_keys()]
        direct = engine.score_case(ordered, "DEMO-002", ScoringOptions(max_tiles=2, min_tiles=1))
        with pytest.raises(ParameterError, match="not opened"):
            analysis.run(request, {}, "DEMO-002")
    assert _result(via_contract) == _result(direct)

    context = ReportContext.from_files({k: files[k] for k in request.slide_keys()})
    report = analysis.report(via_contract, context, ReportOptions())
    expected = build_reports(via_contract, context, engine.head.probability)
    assert _stable(report.sr) == _stable(expected.sr)
    assert [_stable(h.dataset) for h in report.heatmaps] == [
        _stable(h.dataset) for h in expected.heatmaps
    ]
    assert _bundle(report.bundle) == _bundle(expected.bundle)
    assert report.key == expected.ids.key
    assert report.observation_identifier == expected.ids.observation_identifier
    assert report.triage == expected.triage
    summary = hrd_document(expected)
    document = dict(report.document)
    assert {k: v for k, v in document.items() if k not in ("timings", "created")} == {
        k: v for k, v in summary.items() if k not in ("timings", "created")
    }
    outcome = analysis.outcome(via_contract)
    assert outcome.analysis is AnalysisName.HRD and outcome.call == str(direct.call)
    assert outcome.value == direct.probability and outcome.demo is True
    assert outcome.model_key == engine.model.key
