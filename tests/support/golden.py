"""Fingerprints of what a PACS or EHR receives for the sample cases, kept as golden files.

The regression test (``tests/test_output_regression.py``) rebuilds the reports of the
bundled sample cases (HRD: DEMO-001, DEMO-002; HER2: HER2-DEMO-01 dual path,
HER2-DEMO-02 IHC missing; each also as a result that supersedes an earlier one) from
engine results kept in ``tests/data/golden/`` and compares every element of every
object, field by field, with the golden fingerprints there. The results are kept, not
recomputed, so the test checks the report road (which code moves touch) and not the
floating point of the backbone on a given CPU.

Only what differs between two runs by design is left out: the creation dates and times
of the objects and the FHIR ``issued`` / ``recorded`` instants. UIDs are derived from the
inputs and model, so they are compared.

Regenerate the golden files only when an output change is intended (and say so in the
commit)::

    .venv/bin/python -m support.golden --write     # from tests/
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pydicom
from pydicom.dataset import Dataset

from ihgamp_core.analysis import AnalysisReport, ReportOptions
from ihgamp_core.report import Supersedes

if TYPE_CHECKING:
    from ihgamp_core.report import ReportContext

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "golden"

#: Elements that carry the time an object was made (PS3.3 C.12.1, C.7.6.1, C.17.2).
VARYING_TAGS = {
    "00080012",  # InstanceCreationDate
    "00080013",  # InstanceCreationTime
    "00080021",  # SeriesDate
    "00080031",  # SeriesTime
    "00080023",  # ContentDate
    "00080033",  # ContentTime
    "0040A032",  # ObservationDateTime
    "0018A002",  # ContributionDateTime
    "00181200",  # DateOfLastCalibration
    "00181201",  # TimeOfLastCalibration
}
VARYING_FHIR_KEYS = {"issued", "recorded", "lastUpdated"}
#: Longer lists are kept as their length, first items and a digest (the golden files stay
#: readable; a change anywhere in the list still fails).
LONG = 16

#: A fixed predecessor, so the superseding form of every report is covered too.
PREDECESSOR = Supersedes(
    observation_identifier="golden-first-observation",
    sr_study_uid="2.25.1",
    sr_series_uid="2.25.2",
    sr_sop_uid="2.25.3",
    sr_sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34",
    created="2026-01-01T00:00:00+00:00",
    slides=1,
)


def _bulk(element: Any) -> str:
    value = element.value
    data = value if isinstance(value, bytes) else str(value).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _strip(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            k: _strip(v)
            for k, v in data.items()
            if k not in VARYING_TAGS and k not in VARYING_FHIR_KEYS
        }
    if isinstance(data, list):
        items = [_strip(v) for v in data]
        if len(items) > LONG:  # per-frame groups, pixel spacings: the first few, and a digest
            digest = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()
            return {"items": len(items), "first": items[:3], "sha256": digest}
        return items
    return data


def dicom_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """Every element of a DICOM object (file meta included), bulk data as its SHA-256."""
    meta = dataset.file_meta.to_json_dict() if hasattr(dataset, "file_meta") else {}
    body = dataset.to_json_dict(bulk_data_threshold=256, bulk_data_element_handler=_bulk)
    plain = json.loads(json.dumps({"meta": meta, "dataset": body}, default=str))
    return {"meta": _strip(plain["meta"]), "dataset": _strip(plain["dataset"])}


def report_fingerprint(report: AnalysisReport) -> dict[str, Any]:
    """The SR, each heatmap object and PNG, the FHIR Bundle and the result document."""
    bundle = (
        None
        if report.bundle is None
        else _strip(report.bundle.model_dump(mode="json", exclude_none=True))
    )
    document = json.loads(json.dumps(report.document, default=str))
    for key in ("created", "timings"):
        document.pop(key, None)
    return {
        "key": report.key,
        "observation_identifier": report.observation_identifier,
        "observation_code": list(report.observation_code),
        "sr": dicom_fingerprint(report.sr),
        "heatmaps": [
            {
                "series_uid": h.series_uid,
                "object": dicom_fingerprint(h.dataset),
                "png": None if h.png is None else hashlib.sha256(h.png).hexdigest(),
            }
            for h in report.heatmaps
        ],
        "bundle": bundle,
        "document": _strip(document),
    }


def _files(folder: Path) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        files.setdefault(str(ds.SeriesInstanceUID), []).append(path)
    return files


@contextmanager
def _thumbnails(files: dict[str, list[Path]]) -> Iterator[dict[str, Any]]:
    from ihgamp_core.slide.dicom import DicomSlide
    from ihgamp_core.slide.resample import read_thumbnail

    with ExitStack() as stack:
        yield {
            key: read_thumbnail(stack.enter_context(DicomSlide(paths, source=key)), 256)
            for key, paths in files.items()
        }


class Issued(NamedTuple):
    """One report as built, with the headers it was built from."""

    report: AnalysisReport
    context: ReportContext


def _issues(analysis: Any, result: Any, files: dict[str, list[Path]]) -> list[Issued]:
    """The report of one result as first issued and as superseding :data:`PREDECESSOR`."""
    from ihgamp_core.report import ReportContext

    context = ReportContext.from_files(files)
    with _thumbnails(files) as thumbs:
        return [
            Issued(analysis.report(result, context, ReportOptions(thumbs, None, None, s)), context)
            for s in (None, PREDECESSOR)
        ]


def _by_case(case_id: str, issues: list[Issued]) -> dict[str, Issued]:
    return {case_id: issues[0], f"{case_id}-amended": issues[1]}


def fingerprints(issued: dict[str, Issued]) -> dict[str, Any]:
    """The fingerprint of each case's report."""
    return {case: report_fingerprint(i.report) for case, i in issued.items()}


def hrd_reports(samples_root: Path, engine: Any, results: dict[str, Any]) -> dict[str, Issued]:
    """The HRD sample cases' reports, from the given engine results."""
    from ihgamp_core.hrd.analysis import HrdAnalysis
    from ihgamp_core.hrd.result import result_from_dict

    analysis = HrdAnalysis(engine)
    out: dict[str, Issued] = {}
    for case_id, data in sorted(results.items()):
        result = result_from_dict(data)
        files = _files(samples_root / "dicom" / case_id)
        files = {
            s.info.series_instance_uid: files[s.info.series_instance_uid] for s in result.slides
        }
        out |= _by_case(case_id, _issues(analysis, result, files))
    return out


def her2_reports(her2_root: Path, model: Any, results: dict[str, Any]) -> dict[str, Issued]:
    """The HER2 sample cases' reports, from the given model results."""
    from ihgamp_core.her2.analysis import Her2Analysis
    from ihgamp_core.her2.result import her2_result_from_dict

    analysis = Her2Analysis(model)
    out: dict[str, Issued] = {}
    for case_id, entry in sorted(results.items()):
        files = _files(her2_root / "dicom" / case_id)
        files = {k: files[k] for k in entry["slides"]}
        result = her2_result_from_dict(entry["result"])
        out |= _by_case(case_id, _issues(analysis, result, files))
    return out


def load(name: str) -> Any:
    """A golden file's content."""
    return json.loads((GOLDEN / name).read_text())


def _write(name: str, data: Any) -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    (GOLDEN / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _score_and_write() -> None:  # pragma: no cover - run by hand
    import tempfile

    from conftest import DEMO_HEAD, SAMPLES
    from ihgamp_core.analysis import route
    from ihgamp_core.analysis.contract import AnalysisName, AnalysisSpec
    from ihgamp_core.analysis.metadata import series_metadata_from_dataset
    from ihgamp_core.embed.openclip import OpenClipBackbone
    from ihgamp_core.head.artifact import load_head
    from ihgamp_core.her2.analysis import HER2_APPLICABILITY, Her2Analysis
    from ihgamp_core.her2.infer import Her2Options
    from ihgamp_core.her2.model import load_her2
    from ihgamp_core.her2.result import her2_result_to_dict
    from ihgamp_core.her2.samples import build_her2_samples
    from ihgamp_core.hrd.engine import Engine, ScoringOptions
    from ihgamp_core.hrd.result import result_to_dict
    from ihgamp_core.slide import discover_slides
    from ihgamp_core.slide.dicom import DicomSlide
    from ihgamp_core.synthetic.samples import build_samples

    build_samples(SAMPLES)
    engine = Engine(OpenClipBackbone(device="cpu"), load_head(DEMO_HEAD))
    hrd: dict[str, Any] = {}
    for case_id in ("DEMO-001", "DEMO-002"):
        with ExitStack() as stack:
            sources = discover_slides([SAMPLES / "dicom" / case_id])
            slides = [stack.enter_context(s.open()) for s in sources]
            options = ScoringOptions(max_tiles=4, min_tiles=1)
            result = engine.score_case(slides, case_id, options)
        hrd[case_id] = result_to_dict(result)
    _write("hrd-results.json", hrd)
    _write("hrd-reports.json", fingerprints(hrd_reports(SAMPLES, engine, load("hrd-results.json"))))

    root = Path(tempfile.mkdtemp())
    build_her2_samples(root)
    model = load_her2(REPO / "sample_data" / "her2_demo" / "her2-demo.safetensors")
    analysis = Her2Analysis(model, Her2Options(min_tiles=16))
    her2: dict[str, Any] = {}
    for case_id in ("HER2-DEMO-01", "HER2-DEMO-02"):
        files = _files(root / "dicom" / case_id)
        metadata = [
            series_metadata_from_dataset(pydicom.dcmread(p[0], stop_before_pixels=True))
            for p in files.values()
        ]
        decision = route(metadata, [AnalysisSpec(AnalysisName.HER2, HER2_APPLICABILITY)])
        (request,) = decision.for_analysis(AnalysisName.HER2)
        with ExitStack() as stack:
            inputs = {
                k: stack.enter_context(DicomSlide(files[k], source=k)) for k in request.slide_keys()
            }
            result = analysis.run(request, inputs, case_id)
        her2[case_id] = {
            "slides": list(request.slide_keys()),
            "result": her2_result_to_dict(result),
        }
    _write("her2-results.json", her2)
    _write("her2-reports.json", fingerprints(her2_reports(root, model, load("her2-results.json"))))


def main() -> None:  # pragma: no cover - run by hand
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="score and write the golden files")
    if parser.parse_args().write:
        _score_and_write()


if __name__ == "__main__":  # pragma: no cover
    main()
