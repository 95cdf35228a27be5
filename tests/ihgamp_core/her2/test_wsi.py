"""HER2 on whole-slide images: routing on real headers, both modality paths, reports."""

from __future__ import annotations

import json
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from fhir.resources.R4B.bundle import Bundle

from ihgamp_core.analysis import (
    AnalysisName,
    AnalysisReport,
    AnalysisRequest,
    AnalysisSpec,
    ModalityPath,
    ReportOptions,
    SlideRef,
    SlideRole,
    Stain,
    route,
    series_metadata_from_dataset,
)
from ihgamp_core.embed.extract import read_planned_tile
from ihgamp_core.errors import PairingError, ParameterError
from ihgamp_core.her2 import codes as h2
from ihgamp_core.her2.analysis import HER2_APPLICABILITY, Her2Analysis
from ihgamp_core.her2.infer import Her2Options, score_her2
from ihgamp_core.her2.model import Her2Model, load_her2
from ihgamp_core.her2.register import Registration, read_ihc_patch, register_slides
from ihgamp_core.her2.result import (
    Her2Result,
    Her2Score,
    her2_result_from_dict,
    her2_result_to_dict,
)
from ihgamp_core.her2.samples import Her2SampleCase, build_her2_samples
from ihgamp_core.her2.triage import MISSING_HE_NOTE, MISSING_IHC_NOTE
from ihgamp_core.hrd.analysis import HRD_APPLICABILITY
from ihgamp_core.params import TilingParams
from ihgamp_core.report import ReportContext
from ihgamp_core.slide import DicomSlide, open_slide
from ihgamp_core.slide.resample import read_thumbnail
from ihgamp_core.tiling import plan_tiles

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
DEMO_CHECKPOINT = REPO / "sample_data" / "her2_demo" / "her2-demo.safetensors"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


@pytest.fixture(scope="module")
def her2_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("her2")
    build_her2_samples(root)
    return root


@pytest.fixture(scope="module")
def cases(her2_root: Path) -> dict[str, Her2SampleCase]:
    from ihgamp_core.her2.samples import load_her2_cases

    return {case.case_id: case for case in load_her2_cases(her2_root)}


@pytest.fixture(scope="module")
def model() -> Her2Model:
    assert DEMO_CHECKPOINT.is_file(), (
        "DEMO HER2 model missing: python sample_data/build_her2_demo.py"
    )
    return load_her2(DEMO_CHECKPOINT)


@pytest.fixture(scope="module")
def analysis(model: Her2Model) -> Her2Analysis:
    return Her2Analysis(model, Her2Options(min_tiles=16))


def _files(folder: Path) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        files.setdefault(str(ds.SeriesInstanceUID), []).append(path)
    return files


def _run(
    analysis: Her2Analysis, request: AnalysisRequest, files: dict[str, list[Path]], case_id: str
) -> tuple[Her2Result, AnalysisReport]:
    with ExitStack() as stack:
        slides = {
            k: stack.enter_context(DicomSlide(files[k], source=k)) for k in request.slide_keys()
        }
        result = analysis.run(request, slides, case_id)
        thumbnails = {k: read_thumbnail(s, 256) for k, s in slides.items()}
    context = ReportContext.from_files({k: files[k] for k in request.slide_keys()})
    return result, analysis.report(result, context, ReportOptions(thumbnails=thumbnails))


def _dciodvfy(dataset: Any, tmp_path: Path, name: str) -> list[str]:
    exe = shutil.which("dciodvfy")
    assert exe, "dicom3tools (dciodvfy) is required: apt-get install dicom3tools"
    path = tmp_path / f"{name}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def _sr_items(ds: pydicom.Dataset) -> list[tuple[str, str]]:
    """(concept code value, value) of every CODE and TEXT item of an SR, recursively."""
    out = []

    def walk(seq: Any) -> None:
        for item in seq:
            name = (
                item.ConceptNameCodeSequence[0].CodeValue
                if "ConceptNameCodeSequence" in item
                else ""
            )
            if item.get("ValueType") == "CODE":
                out.append((name, str(item.ConceptCodeSequence[0].CodeValue)))
            elif item.get("ValueType") == "TEXT":
                out.append((name, str(item.TextValue)))
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.ContentSequence)
    return out


def _observation(bundle: Any) -> dict[str, Any]:
    data = Bundle.model_validate(bundle.model_dump(mode="json")).model_dump(mode="json")
    return next(
        e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == "Observation"
    )


def _request(
    her2_root: Path, case: Her2SampleCase
) -> tuple[AnalysisRequest, dict[str, list[Path]]]:
    files = _files(her2_root / "dicom" / case.case_id)
    metadata = [
        series_metadata_from_dataset(pydicom.dcmread(paths[0], stop_before_pixels=True))
        for paths in files.values()
    ]
    for meta in metadata:
        assert meta.body_part == "BREAST" and meta.block == case.block
        assert meta.stain in (Stain.HE, Stain.IHC_HER2)
    decision = route(
        metadata,
        [
            AnalysisSpec(AnalysisName.HER2, HER2_APPLICABILITY),
            AnalysisSpec(AnalysisName.HRD, HRD_APPLICABILITY),
        ],
    )
    (request,) = decision.for_analysis(AnalysisName.HER2)
    (hrd,) = decision.for_analysis(AnalysisName.HRD)
    assert hrd.slide_keys() == request.slide_keys(SlideRole.HE)
    return request, files


def test_dual_path_on_an_he_ihc_pair(
    her2_root: Path, cases: dict[str, Her2SampleCase], analysis: Her2Analysis, tmp_path: Path
) -> None:
    case = cases["HER2-DEMO-01"]
    request, files = _request(her2_root, case)
    assert request.path is ModalityPath.DUAL and request.pairing == "block"
    result, report = _run(analysis, request, files, case.case_id)

    assert result.path is ModalityPath.DUAL and not result.ihc_missing
    assert result.registration is not None and result.registration.iou > 0.8
    assert result.n_tiles >= 40 and result.unpaired_tiles < result.n_tiles / 5
    assert result.probabilities is not None and sum(result.probabilities) == pytest.approx(1.0)
    assert result.score is Her2Score(case.score)  # the DEMO model on its own synthetic world
    assert report.outcome.call == f"her2-{case.score}" and report.outcome.path is ModalityPath.DUAL

    assert _dciodvfy(report.sr, tmp_path, "sr") == []
    items = _sr_items(report.sr)
    assert (h2.HER2_SCORE.value, h2.HER2_SCORE_CODES[case.score].value) in items
    assert (h2.HER2_PATH.value, h2.HER2_PATH_CODES[ModalityPath.DUAL].value) in items
    assert not [v for name, v in items if name == h2.HER2_MISSING.value]
    assert report.sr.StudyInstanceUID == case.identity["study_instance_uid"]
    from ihgamp_core.hrd.maps import PM_SERIES_NUMBER
    from ihgamp_core.hrd.sr import SR_SERIES_NUMBER

    numbers = {report.sr.SeriesNumber} | {h.dataset.SeriesNumber for h in report.heatmaps}
    assert not numbers & {SR_SERIES_NUMBER, PM_SERIES_NUMBER}  # apart from HRD's series

    (heatmap,) = report.heatmaps
    assert heatmap.series_uid == request.slide_keys(SlideRole.HE)[0] and heatmap.png
    assert _dciodvfy(heatmap.dataset, tmp_path, "seg") == []
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(tmp_path / "seg.dcm"), copy=False)
    assert seg.SOPClassUID == SEGMENTATION and seg.number_of_segments == 4
    source = pydicom.dcmread(files[heatmap.series_uid][0], stop_before_pixels=True)
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID

    observation = _observation(report.bundle)
    codings = {(x["system"], x["code"]) for x in observation["code"]["coding"]}
    assert ("http://loinc.org", "85319-2") in codings
    value = {(x["system"], x["code"]) for x in observation["valueCodeableConcept"]["coding"]}
    assert ("http://loinc.org", h2.HER2_SCORE_CODES[case.score].value) in value
    assert observation["meta"]["security"][0]["code"] == "AIAST"
    assert any("DEMO" in n["text"] for n in observation["note"])
    assert report.observation_code == ("http://loinc.org", "85319-2")
    assert report.document["path"] == "dual" and report.document["amplification_assessed"] is False

    document = her2_result_to_dict(result)
    again = her2_result_from_dict(json.loads(json.dumps(document)))
    assert {**her2_result_to_dict(again), "registration": document["registration"]} == document


def test_he_only_path_says_the_ihc_is_missing_in_every_output(
    her2_root: Path, cases: dict[str, Her2SampleCase], analysis: Her2Analysis, tmp_path: Path
) -> None:
    case = cases["HER2-DEMO-02"]
    request, files = _request(her2_root, case)
    assert request.path is ModalityPath.HE_ONLY
    result, report = _run(analysis, request, files, case.case_id)
    assert result.path is ModalityPath.HE_ONLY and result.ihc_missing
    assert result.score is not None and result.registration is None

    assert _dciodvfy(report.sr, tmp_path, "sr") == []
    items = _sr_items(report.sr)
    assert (h2.HER2_MISSING.value, h2.HER2_MISSING_CODES["ihc"].value) in items
    assert (h2.HER2_PATH.value, h2.HER2_PATH_CODES[ModalityPath.HE_ONLY].value) in items
    assert MISSING_IHC_NOTE in [v for _, v in items]
    assert "no IHC" in report.sr.SeriesDescription

    observation = _observation(report.bundle)
    components = {
        comp["code"]["coding"][0]["code"]: comp["valueCodeableConcept"]["coding"][0]["code"]
        for comp in observation["component"]
        if "valueCodeableConcept" in comp
    }
    assert components[h2.HER2_MISSING.value] == h2.HER2_MISSING_CODES["ihc"].value
    assert any(n["text"] == MISSING_IHC_NOTE for n in observation["note"])
    assert "H&E only" in observation["method"]["text"]

    assert report.triage.category == "confirm-with-ihc"
    assert "order HER2 IHC" in report.triage.text and "pathologist" in report.triage.text
    assert report.document["ihc_missing"] is True and MISSING_IHC_NOTE in report.document["notes"]
    # The synthesised IHC is never an output: only the SR and the class-map Segmentation.
    classes = {report.sr.SOPClassUID} | {h.dataset.SOPClassUID for h in report.heatmaps}
    assert classes == {COMPREHENSIVE_3D_SR, SEGMENTATION}
    (heatmap,) = report.heatmaps
    assert _dciodvfy(heatmap.dataset, tmp_path, "seg") == []


def test_ihc_only_path_flags_the_missing_he(
    her2_root: Path, cases: dict[str, Her2SampleCase], analysis: Her2Analysis, tmp_path: Path
) -> None:
    case = cases["HER2-DEMO-01"]
    dual, files = _request(her2_root, case)
    ihc_key = dual.slide_keys(SlideRole.IHC)[0]
    request = AnalysisRequest(
        AnalysisName.HER2, (SlideRef(ihc_key, SlideRole.IHC, case.block),), ModalityPath.IHC_ONLY
    )
    result, report = _run(analysis, request, files, case.case_id)
    assert result.path is ModalityPath.IHC_ONLY and result.he_missing and result.n_tiles >= 40
    items = _sr_items(report.sr)
    assert (h2.HER2_MISSING.value, h2.HER2_MISSING_CODES["he"].value) in items
    assert MISSING_HE_NOTE in [v for _, v in items]
    assert report.triage.category == "confirm-without-he"
    assert _dciodvfy(report.sr, tmp_path, "sr") == []


def test_registration_brings_the_ihc_tile_onto_the_he_tile(
    her2_root: Path, cases: dict[str, Her2SampleCase], model: Her2Model
) -> None:
    case = cases["HER2-DEMO-01"]
    with ExitStack() as stack:
        he = stack.enter_context(open_slide(her2_root / case.svs["he"]))
        ihc = stack.enter_context(open_slide(her2_root / case.svs["ihc"]))
        registration = register_slides(he, ihc)
        assert registration.iou > 0.8 and abs(registration.angle_deg - 3.0) <= 1.0
        config = model.config
        plan = plan_tiles(
            he,
            TilingParams(
                tile_px=config.input_px, target_mpp=config.tile_mpp, stride_px=config.input_px
            ),
        )
        x_um, y_um = plan.um_xy()
        half = config.tile_um / 2
        centres = registration.to_ihc(y_um + half, x_um + half)
        identity = Registration(0.0, (0.0, 0.0), (0.0, 0.0), 1.0, 16.0, registration.ihc_mask)
        aligned, unaligned = [], []
        for i in np.flatnonzero(registration.on_ihc_tissue(centres))[:30]:
            tile = read_planned_tile(he, plan, int(i)).astype(float)[..., 2]
            ours = read_ihc_patch(ihc, registration, centres[i], config.input_px, config.tile_mpp)
            raw = read_ihc_patch(
                ihc,
                identity,
                np.array([y_um[i] + half, x_um[i] + half]),
                config.input_px,
                config.tile_mpp,
            )
            aligned.append(np.corrcoef(tile.ravel(), ours.astype(float)[..., 2].ravel())[0, 1])
            unaligned.append(np.corrcoef(tile.ravel(), raw.astype(float)[..., 2].ravel())[0, 1])
    assert np.nanmean(aligned) > 0.3 and np.nanmean(aligned) > 5 * abs(np.nanmean(unaligned))


def test_sections_that_do_not_match_are_refused_not_scored(
    her2_root: Path,
    cases: dict[str, Her2SampleCase],
    model: Her2Model,
    slide_factory: Any,
) -> None:
    other = slide_factory(width_um=2048.0, height_um=512.0, coverage=0.3, seed=21)
    with ExitStack() as stack:
        he = stack.enter_context(open_slide(her2_root / cases["HER2-DEMO-01"].svs["he"]))
        wrong = stack.enter_context(open_slide(other))
        with pytest.raises(PairingError, match="do not match") as info:
            score_her2(model, he, wrong, "X")
    assert "\n" not in str(info.value) and "same block" in str(info.value)


def test_requests_that_do_not_fit_their_path_are_refused(
    her2_root: Path, cases: dict[str, Her2SampleCase], analysis: Her2Analysis
) -> None:
    request, files = _request(her2_root, cases["HER2-DEMO-01"])
    wrong = AnalysisRequest(AnalysisName.HER2, request.slides, ModalityPath.HE_ONLY)
    with pytest.raises(ParameterError, match="needs 1 H&E and 0 IHC"):
        analysis.run(wrong, {k: None for k in wrong.slide_keys()}, "X")  # type: ignore[misc]
    with pytest.raises(ParameterError, match="not opened"):
        analysis.run(request, {}, "X")
