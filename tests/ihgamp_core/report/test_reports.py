"""Reports of a real scored case: SR, Parametric Map, PNG, FHIR; validated and read back."""

from __future__ import annotations

import copy
import io
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from PIL import Image
from pydicom.filebase import DicomBytesIO

from ihgamp_core.hrd import codes as hc
from ihgamp_core.hrd.engine import Engine, ScoringOptions
from ihgamp_core.hrd.maps import tile_grid
from ihgamp_core.hrd.reports import CaseReport, build_reports, output_ids
from ihgamp_core.hrd.result import Call, CaseResult, QCFlag
from ihgamp_core.hrd.triage import DISCLAIMER, TriagePolicy, triage
from ihgamp_core.report import ReportContext
from ihgamp_core.report import codes as c
from ihgamp_core.slide import discover_slides
from ihgamp_core.slide.resample import read_thumbnail
from ihgamp_core.synthetic.samples import SampleCase
from support.reports import dciodvfy

pytestmark = pytest.mark.slow


def _context(folder: Path) -> ReportContext:
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        files.setdefault(str(ds.SeriesInstanceUID), []).append(path)
    return ReportContext.from_files(files)


@pytest.fixture(scope="module")
def scored(
    engine: Engine, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> tuple[CaseResult, ReportContext, CaseReport]:
    folder = samples_root / "dicom" / "DEMO-002"
    sources = discover_slides([folder])
    with ExitStack() as stack:
        slides = [stack.enter_context(s.open()) for s in sources]
        result = engine.score_case(slides, "DEMO-002", ScoringOptions(max_tiles=6, min_tiles=1))
        thumbs = {s.label: read_thumbnail(sl, 512) for s, sl in zip(sources, slides, strict=True)}
    context = _context(folder)
    # Order the context like the result's slides.
    order = [s.info.series_instance_uid for s in result.slides]
    context = ReportContext(tuple(sorted(context.slides, key=lambda s: order.index(s.series_uid))))
    thumbs = {
        context.slides[i].series_uid: t for i, t in enumerate(thumbs[s.label] for s in sources)
    }
    report = build_reports(result, context, engine.head.probability, thumbs)
    return result, context, report


def _dciodvfy(dataset: pydicom.Dataset, tmp_path: Path) -> tuple[list[str], str]:
    path = tmp_path / "object.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return dciodvfy(path)


def _roundtrip(dataset: pydicom.Dataset) -> pydicom.Dataset:
    buffer = DicomBytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_sr_is_valid_and_reads_back(
    scored: tuple[CaseResult, ReportContext, CaseReport], tmp_path: Path
) -> None:
    result, context, report = scored
    errors, text = _dciodvfy(report.sr, tmp_path)
    assert errors == [], text
    ds = _roundtrip(report.sr)
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    assert ds.StudyInstanceUID == context.study_uid
    assert ds.SeriesInstanceUID != context.slides[0].series_uid
    assert ds.PatientID == context.patient_id and ds.PatientName == context.first.PatientName
    assert ds.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99IHGAMP"
    (group,) = sr.content.get_image_measurement_groups()
    values = {m.name.value: m.value for m in group.get_measurements()}
    assert values[hc.HRD_PROBABILITY.value] == pytest.approx(result.probability)
    assert values[hc.HRD_SCORE.value] == pytest.approx(result.score)
    assert values[hc.OPERATING_THRESHOLD.value] == pytest.approx(result.threshold)
    evaluations = {e.name.value: e.value.value for e in group.get_qualitative_evaluations()}
    assert evaluations[hc.HRD_CALL.value] == hc.CALL_CODES[result.call].value
    assert evaluations[c.TRIAGE.value] == hc.TRIAGE_CODES[report.triage.category].value
    items = list(_walk(ds.ContentSequence))
    texts = {name: [v for n, v in items if n == name] for name, _ in items}
    assert "IHGAMP HRD" in texts["Algorithm Name"]
    assert any("random-init-seed-0" in v for v in texts["Algorithm Parameters"])
    assert any("tile_px=256" in v for v in texts["Algorithm Parameters"])
    assert "precision=fp32" in texts["Algorithm Parameters"]
    comments = texts["Comment"]
    assert any(DISCLAIMER in t for t in comments) and any(
        "not for clinical use" in t for t in comments
    )
    assert report.triage.text in comments
    assert texts["Specimen UID"] == [context.slides[0].specimen_uid]
    assert texts["Device Observer UID"] == [report.ids.device_uid]
    referenced = {
        str(ref.ReferencedSOPInstanceUID)
        for item in ds.CurrentRequestedProcedureEvidenceSequence
        for series in item.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert {s.base.SOPInstanceUID for s in context.slides} <= referenced


def _walk(sequence: pydicom.Sequence) -> list[tuple[str, str]]:
    """(concept name meaning, text/UID value) of every TEXT and UIDREF item, recursively."""
    out = []
    for item in sequence:
        name = (
            item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
        )
        if item.get("ValueType") == "TEXT":
            out.append((name, str(item.TextValue)))
        elif item.get("ValueType") == "UIDREF":
            out.append((name, str(item.UID)))
        if "ContentSequence" in item:
            out.extend(_walk(item.ContentSequence))
    return out


def test_heatmap_parametric_map_is_registered_and_round_trips(
    scored: tuple[CaseResult, ReportContext, CaseReport], engine: Engine, tmp_path: Path
) -> None:
    result, context, report = scored
    assert len(report.heatmaps) == len(result.slides) == 2
    for heatmap, slide in zip(report.heatmaps, result.slides, strict=True):
        series_uid, pm, png = heatmap.series_uid, heatmap.dataset, heatmap.png
        errors, text = _dciodvfy(pm, tmp_path)
        assert errors == [], text
        ds = _roundtrip(pm)
        source = context.slide(series_uid).base  # type: ignore[union-attr]
        assert ds.FrameOfReferenceUID == source.FrameOfReferenceUID
        assert ds.StudyInstanceUID == context.study_uid
        expected, size = tile_grid(slide, engine.head.probability)
        spacing = float(
            ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing[0]
        )
        source_mm = float(
            source.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing[0]
        )
        assert spacing == pytest.approx(size * source_mm)
        assert (ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns) == expected.shape
        pmap = hd.pm.ParametricMap.from_dataset(ds)
        values = pmap.get_total_pixel_matrix() if hasattr(pmap, "get_total_pixel_matrix") else None
        if values is None:
            values = ds.pixel_array
        np.testing.assert_allclose(np.squeeze(values), expected, atol=1e-6)
        assert expected.max() > 0 and expected.max() <= 1
        # The first map pixel's centre is the first tile's centre; the origins are pixel
        # centres, so they lie (size / 2 - 0.5) source pixels apart along each axis.
        position = ds.TotalPixelMatrixOriginSequence[0]
        origin = source.TotalPixelMatrixOriginSequence[0]
        half = (size / 2 - 0.5) * source_mm
        assert abs(
            float(position.XOffsetInSlideCoordinateSystem)
            - float(origin.XOffsetInSlideCoordinateSystem)
        ) == pytest.approx(half, rel=1e-3)
        image = Image.open(io.BytesIO(png))  # type: ignore[arg-type]
        assert image.format == "PNG" and max(image.size) <= 512


def test_fhir_bundle_codes_and_values(
    scored: tuple[CaseResult, ReportContext, CaseReport],
) -> None:
    result, context, report = scored
    bundle = Bundle.model_validate_json(report.bundle.model_dump_json())
    kinds = [e.resource.get_resource_type() for e in bundle.entry]
    assert kinds == ["Device", "Observation", "Provenance"]
    conditions = [e.request.ifNoneExist for e in bundle.entry]
    assert conditions[1] == f"identifier=urn:ihgamp:observation|{report.ids.observation_identifier}"
    obs = Observation.model_validate(bundle.entry[1].resource.model_dump())
    codings = {(x.system, x.code) for x in obs.code.coding}
    assert ("http://loinc.org", "107286-7") in codings
    assert obs.meta.security[0].code == "AIAST"
    assert obs.subject.identifier.value == context.patient_id == "SYN-0002"
    assert obs.subject.identifier.system == "urn:ihgamp:issuer:IHGAMP-DEMO"
    assert obs.derivedFrom[0].identifier.value == f"urn:oid:{context.study_uid}"
    assert obs.device.reference == bundle.entry[0].fullUrl
    assert "AI estimate" in obs.method.text and "not a molecular assay" in obs.method.text
    components = {comp.code.coding[0].code: comp for comp in obs.component}
    assert float(components["HRD-P"].valueQuantity.value) == pytest.approx(
        result.probability, abs=1e-6
    )
    assert float(components["HRD-S"].valueQuantity.value) == pytest.approx(result.score, abs=1e-6)
    assert float(components["HRD-T"].valueQuantity.value) == pytest.approx(
        result.threshold, abs=1e-6
    )
    assert obs.valueCodeableConcept.coding[0].code == hc.CALL_CODES[result.call].value
    notes = " ".join(n.text for n in obs.note)
    assert DISCLAIMER in notes and "not for clinical use" in notes
    expected_interp = {Call.HRD_LIKELY: "POS", Call.HRD_UNLIKELY: "NEG", Call.NO_CALL: "IND"}
    assert obs.interpretation[0].coding[0].code == expected_interp[result.call]
    # Deterministic: rebuilding gives the same identifiers and full URLs.
    again = build_reports(result, context, lambda s: s)
    assert again.ids == report.ids
    assert [e.fullUrl for e in again.bundle.entry] == [e.fullUrl for e in bundle.entry]


def test_triage_rules(scored: tuple[CaseResult, ReportContext, CaseReport]) -> None:
    result, _, _ = scored
    likely = replace(result, probability=0.9, qc_flags=())
    unlikely = replace(result, probability=0.01, qc_flags=())
    flagged = replace(result, qc_flags=(QCFlag.TOO_FEW_TILES,))
    assert triage(likely, "serous carcinoma").category == "prioritise-testing"
    assert triage(unlikely, None).category == "usual-criteria"
    for histology in ("Squamous cell carcinoma of lung", "HNSCC: SCC", "keratinizing carcinoma"):
        assert triage(likely, histology).category == "not-validated"
    assert triage(flagged, "squamous").category == "manual-review"
    custom = TriagePolicy(not_validated_patterns=(r"sarcoma",))
    assert triage(likely, "squamous", custom).category == "prioritise-testing"
    assert triage(likely, "leiomyosarcoma", custom).category == "not-validated"
    assert "not for clinical use" in triage(likely, None).statement
    with pytest.raises(ValueError, match="texts missing"):
        TriagePolicy(texts={"manual-review": "x"})


def test_no_patient_id_means_no_fhir_but_still_an_sr(
    scored: tuple[CaseResult, ReportContext, CaseReport], engine: Engine
) -> None:
    result, context, _ = scored
    anonymous = []
    for slide in context.slides:
        datasets = []
        for ds in slide.datasets:
            clone = copy.deepcopy(ds)
            clone.PatientID = ""  # Type 2: present but empty
            datasets.append(clone)
        anonymous.append(replace(slide, datasets=tuple(datasets)))
    report = build_reports(result, ReportContext(tuple(anonymous)), engine.head.probability)
    assert report.bundle is None and "no Patient ID" in report.notes[0]
    assert report.sr is not None


def test_output_ids_change_with_the_input_not_with_time(
    scored: tuple[CaseResult, ReportContext, CaseReport],
) -> None:
    result, _, report = scored
    assert output_ids(replace(result, created="2030-01-01T00:00:00+00:00")) == report.ids
    changed = replace(result, tiling={**result.tiling, "max_tiles": 7})
    assert output_ids(changed).key != report.ids.key
