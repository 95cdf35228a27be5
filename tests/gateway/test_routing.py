"""Routing at completion (``StudyRouter`` + ``StudyLifecycle``) on real slide headers.

Each study is a set of real DICOM WSI files (the synthetic breast cases, relabelled),
recorded in a real catalog; completing it routes it and writes job rows, or records
why nothing runs. Nothing is mocked: the router reads the files' headers.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from gateway.catalog import AnalysisStore, Catalog, InstanceRecord, JobStore, StudyState
from gateway.config import AnalysesSettings
from gateway.lifecycle import RowSubmitter, StudyLifecycle
from gateway.routing import StudyRouter
from ihgamp_core.her2.samples import Her2SampleCase, build_her2_samples, load_her2_cases
from support.studies import restudy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def her2_cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Her2SampleCase]]:
    root = tmp_path_factory.mktemp("her2")
    build_her2_samples(root)
    return root, {c.case_id: c for c in load_her2_cases(root)}


def _files(root: Path, case: Her2SampleCase, role: str) -> list[Path]:
    return sorted((root / case.slides[role]).glob("*.dcm"))


def _record(catalog: Catalog, files: list[Path]) -> str:
    study = ""
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        study = str(ds.StudyInstanceUID)
        catalog.record_instance(
            InstanceRecord(
                study_uid=study,
                series_uid=str(ds.SeriesInstanceUID),
                sop_instance_uid=str(ds.SOPInstanceUID),
                sop_class_uid=str(ds.SOPClassUID),
                transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
                modality="SM",
                accession_number=None,
                image_flavor="VOLUME",
                pixel_spacing_um=0.5,
                path=str(path),
                size=path.stat().st_size,
                sha256=str(ds.SOPInstanceUID),
            ),
            None,
        )
    return study


def _complete(catalog: Catalog, files: list[Path], **analyses: object) -> tuple[str, str | None]:
    """Record the files as one study, complete it; return its state and reason."""
    settings = AnalysesSettings.model_validate(analyses)
    lifecycle = StudyLifecycle(
        catalog, RowSubmitter(JobStore(catalog), 3), None, StudyRouter(catalog, settings)
    )
    uid = _record(catalog, files)
    assert lifecycle.complete(uid, "stable")
    study = catalog.study(uid)
    assert study is not None
    return study.state, study.state_reason


def _keys(catalog: Catalog, uid: str) -> dict[str, str | None]:
    views = JobStore(catalog).jobs(study_uid=uid)
    return {j.job_key: j.analysis for j in views}


def test_hrd_only_sites_get_one_job_on_every_h_and_e_slide(
    catalog: Catalog, her2_cases: tuple[Path, dict[str, Her2SampleCase]], tmp_path: Path
) -> None:
    root, cases = her2_cases
    pair = cases["HER2-DEMO-01"]
    he = restudy(_files(root, pair, "he"), tmp_path / "he", "hrd-only")
    ihc = restudy(_files(root, pair, "ihc"), tmp_path / "ihc", "hrd-only")
    state, _ = _complete(catalog, he + ihc)  # the default: enabled = ["hrd"]
    uid = str(pydicom.dcmread(he[0], stop_before_pixels=True).StudyInstanceUID)
    assert state == StudyState.QUEUED and _keys(catalog, uid) == {"hrd": "hrd"}
    routing = AnalysisStore(catalog).routing(uid)
    assert routing is not None
    (request,) = routing["requests"]
    he_series = str(pydicom.dcmread(he[0], stop_before_pixels=True).SeriesInstanceUID)
    assert [s["key"] for s in request["slides"]] == [he_series]  # the IHC is not HRD's


def test_an_ihc_only_study_with_her2_disabled_is_recorded_as_no_analysis_applies(
    catalog: Catalog, her2_cases: tuple[Path, dict[str, Her2SampleCase]], tmp_path: Path
) -> None:
    root, cases = her2_cases
    ihc = restudy(_files(root, cases["HER2-DEMO-01"], "ihc"), tmp_path / "ihc", "ihc-alone")
    state, reason = _complete(catalog, ihc)
    assert state == StudyState.IGNORED
    assert reason is not None and reason.startswith("no analysis applies")
    assert "hrd: no slide with a stain it reads (he)" in reason


def test_two_h_and_e_slides_of_one_block_are_refused_for_her2_while_the_rest_is_scored(
    catalog: Catalog, her2_cases: tuple[Path, dict[str, Her2SampleCase]], tmp_path: Path
) -> None:
    root, cases = her2_cases
    pair, alone = cases["HER2-DEMO-01"], cases["HER2-DEMO-02"]
    files = (
        restudy(_files(root, pair, "he"), tmp_path / "a-he", "ambiguous")
        + restudy(_files(root, pair, "ihc"), tmp_path / "a-ihc", "ambiguous")
        + restudy(_files(root, alone, "he"), tmp_path / "b-he", "ambiguous")
        + restudy(_files(root, alone, "he"), tmp_path / "b-he2", "ambiguous")
    )
    # Blocks: A1 of case 01 has H&E + IHC; case 02's block has two H&E slides.
    state, reason = _complete(catalog, files, enabled=["hrd", "her2"])
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert state == StudyState.QUEUED
    assert _keys(catalog, uid) == {"hrd": "hrd", f"her2:{pair.block}": "her2"}
    routing = AnalysisStore(catalog).routing(uid)
    assert routing is not None
    assert [(r["kind"], r["analysis"]) for r in routing["refusals"]] == [
        ("ambiguous-pairing", "her2")
    ]
    assert reason is not None and "refused: ambiguous-pairing (her2)" in reason


def test_a_study_whose_slides_are_all_refused_fails_with_the_reasons_and_keeps_its_files(
    catalog: Catalog, her2_cases: tuple[Path, dict[str, Her2SampleCase]], tmp_path: Path
) -> None:
    root, cases = her2_cases
    pair, alone = cases["HER2-DEMO-01"], cases["HER2-DEMO-02"]
    files = restudy(_files(root, alone, "he"), tmp_path / "he", "mm") + restudy(
        _files(root, pair, "ihc"), tmp_path / "ihc", "mm"
    )
    state, reason = _complete(catalog, files, enabled=["her2"])
    assert state == StudyState.FAILED
    assert reason is not None and reason.startswith("not scored: mismatched-blocks (her2):")
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert _keys(catalog, uid) == {}
    kept = catalog.series_files(uid).values()
    assert sum(len(v.paths) for v in kept) == len(files)  # nothing lost


def test_a_slide_of_unknown_stain_is_refused_when_the_site_sets_no_default(
    catalog: Catalog, her2_cases: tuple[Path, dict[str, Her2SampleCase]], tmp_path: Path
) -> None:
    root, cases = her2_cases
    files = restudy(
        _files(root, cases["HER2-DEMO-02"], "he"),
        tmp_path / "he",
        "unknown",
        SpecimenDescriptionSequence=None,
        SeriesDescription="slide 1",
    )
    state, reason = _complete(catalog, files, enabled=["hrd", "her2"], default_stain="none")
    assert state == StudyState.FAILED
    assert reason is not None and reason.startswith("not scored: unknown-stain:")
    assert "configure a stain rule or a default stain" in reason
    # With the compatible default, the same study is an H&E study again.
    again = restudy(files, tmp_path / "he2", "unknown-2")
    state, _ = _complete(catalog, again, enabled=["hrd"])
    assert state == StudyState.QUEUED


def _reblock(files: list[Path], old: str, new: str) -> None:
    """Say in the specimen chain of ``files`` that they come from block ``new``."""

    def walk(dataset: pydicom.Dataset) -> None:
        for element in dataset:
            if element.VR == "SQ":
                for item in element.value:
                    walk(item)
            elif isinstance(element.value, str) and old in element.value:
                element.value = element.value.replace(old, new)

    for path in files:
        ds = pydicom.dcmread(path)
        for specimen in ds.SpecimenDescriptionSequence:
            walk(specimen)
        ds.ContainerIdentifier = str(ds.ContainerIdentifier).replace(old, new)
        ds.save_as(path, enforce_file_format=True)


def test_an_ihc_slide_of_a_block_without_h_and_e_is_refused_while_the_pair_is_scored(
    catalog: Catalog, her2_cases: tuple[Path, dict[str, Her2SampleCase]], tmp_path: Path
) -> None:
    root, cases = her2_cases
    pair = cases["HER2-DEMO-01"]
    files = restudy(_files(root, pair, "he"), tmp_path / "he", "unpaired") + restudy(
        _files(root, pair, "ihc"), tmp_path / "ihc", "unpaired"
    )
    stray = restudy(_files(root, pair, "ihc"), tmp_path / "ihc-b7", "unpaired")
    _reblock(stray, pair.block, "B7")
    state, reason = _complete(catalog, files + stray, enabled=["hrd", "her2"])
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert state == StudyState.QUEUED
    assert _keys(catalog, uid) == {"hrd": "hrd", f"her2:{pair.block}": "her2"}
    routing = AnalysisStore(catalog).routing(uid)
    assert routing is not None
    (refusal,) = routing["refusals"]
    assert (refusal["kind"], refusal["analysis"]) == ("unpaired-ihc", "her2")
    stray_series = str(pydicom.dcmread(stray[0], stop_before_pixels=True).SeriesInstanceUID)
    assert refusal["slides"] == [stray_series]
    assert reason is not None and "refused: unpaired-ihc (her2)" in reason
    assert sum(len(v.paths) for v in catalog.series_files(uid).values()) == len(files + stray)


@pytest.mark.parametrize(
    ("enabled", "state"), [(["hrd"], StudyState.FAILED), (["hrd", "her2"], StudyState.QUEUED)]
)
def test_the_20x_pre_check_is_hrds_alone(
    catalog: Catalog,
    her2_cases: tuple[Path, dict[str, Her2SampleCase]],
    tmp_path: Path,
    enabled: list[str],
    state: StudyState,
) -> None:
    """Slides coarser than HRD needs fail before routing only where HRD is all there is."""
    root, cases = her2_cases
    pair = cases["HER2-DEMO-01"]
    files = restudy(_files(root, pair, "he"), tmp_path / "he", f"coarse-{len(enabled)}")
    files += restudy(_files(root, pair, "ihc"), tmp_path / "ihc", f"coarse-{len(enabled)}")
    settings = AnalysesSettings.model_validate({"enabled": enabled})
    # The slides are recorded at 0.5 um/px; a head needing 0.25 finds them too coarse.
    lifecycle = StudyLifecycle(
        catalog, RowSubmitter(JobStore(catalog), 3), 0.25, StudyRouter(catalog, settings)
    )
    uid = _record(catalog, files)
    assert lifecycle.complete(uid, "stable")
    study = catalog.study(uid)
    assert study is not None and study.state == state
    if state == StudyState.FAILED:
        assert study.state_reason is not None and "(20x equivalent)" in study.state_reason
    else:
        assert _keys(catalog, uid) == {"hrd": "hrd", f"her2:{pair.block}": "her2"}


def _restain(files: list[Path], out: Path, study: str, substances: list[str]) -> list[Path]:
    """Copies of one slide in study ``study`` whose staining step names ``substances``."""
    from pydicom.dataset import Dataset

    copies = restudy(files, out, study)
    for path in copies:
        ds = pydicom.dcmread(path)
        for specimen in ds.SpecimenDescriptionSequence:
            for step in specimen.SpecimenPreparationSequence:
                items = step.SpecimenPreparationStepContentItemSequence
                kept = [i for i in items if i.ConceptNameCodeSequence[0].CodeValue != "424361007"]
                if len(kept) == len(items):
                    continue  # not the staining step
                for text in substances:
                    item = Dataset()
                    item.ValueType = "TEXT"
                    name = Dataset()
                    name.CodeValue, name.CodingSchemeDesignator = "424361007", "SCT"
                    name.CodeMeaning = "Using substance"
                    item.ConceptNameCodeSequence = [name]
                    item.TextValue = text
                    kept.append(item)
                step.SpecimenPreparationStepContentItemSequence = kept
        ds.save_as(path, enforce_file_format=True)
    return copies


@pytest.mark.parametrize(
    ("substances", "kind"),
    [
        (["Zzdye"], "unknown-stain"),
        (["periodic acid", "Schiff reagent"], "unknown-stain"),
        (["hematoxylin", "eosin", "anti-HER2/neu (4B5) antibody"], "conflicting-stain"),
    ],
    ids=["unknown-code", "pas", "he-and-her2"],
)
def test_stains_the_gateway_does_not_know_are_refused_not_scored_as_h_and_e(
    catalog: Catalog,
    her2_cases: tuple[Path, dict[str, Her2SampleCase]],
    tmp_path: Path,
    substances: list[str],
    kind: str,
) -> None:
    root, cases = her2_cases
    source = _files(root, cases["HER2-DEMO-02"], "he")
    odd = _restain(source, tmp_path / "odd", f"stain-{kind}-{len(substances)}", substances)
    # The default site settings (default_stain = "he") must not turn them into H&E.
    state, reason = _complete(catalog, odd, enabled=["hrd", "her2"])
    uid = str(pydicom.dcmread(odd[0], stop_before_pixels=True).StudyInstanceUID)
    assert state == StudyState.FAILED and reason is not None and kind in reason
    assert _keys(catalog, uid) == {}  # nothing queued; the files stay for a rescore
    assert all(p.exists() for p in odd)
    routing = AnalysisStore(catalog).routing(uid)
    assert routing is not None and [r["kind"] for r in routing["refusals"]] == [kind]
    assert substances[0] in routing["refusals"][0]["message"]


def test_a_stain_rule_can_name_a_sites_own_stain_and_no_description_gets_the_default(
    catalog: Catalog, her2_cases: tuple[Path, dict[str, Her2SampleCase]], tmp_path: Path
) -> None:
    root, cases = her2_cases
    source = _files(root, cases["HER2-DEMO-02"], "he")
    hps = _restain(source, tmp_path / "hps", "hps-site", ["hematoxylin phloxine saffron"])
    rule = {"pattern": "phloxine", "stain": "he", "fields": ["stain"]}
    state, _ = _complete(catalog, hps, enabled=["hrd"], stain_rules=[rule])
    assert state == StudyState.QUEUED
    bare = restudy(source, tmp_path / "bare", "no-description", SpecimenDescriptionSequence=None)
    state, _ = _complete(catalog, bare, enabled=["hrd"])  # default_stain = "he" applies
    assert state == StudyState.QUEUED


def test_a_study_of_more_slides_than_the_cap_is_refused_whole_and_kept(
    catalog: Catalog, her2_cases: tuple[Path, dict[str, Her2SampleCase]], tmp_path: Path
) -> None:
    root, cases = her2_cases
    source = _files(root, cases["HER2-DEMO-02"], "he")
    files = [p for n in range(4) for p in restudy(source, tmp_path / f"s{n}", "crowded")]
    state, reason = _complete(catalog, files, enabled=["hrd", "her2"], max_slides_per_study=3)
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert state == StudyState.FAILED and reason is not None and "too-many-slides" in reason
    assert "4 slides, more than the 3" in reason and _keys(catalog, uid) == {}
    assert all(p.exists() for p in files)


def test_a_study_reopened_while_it_is_decided_receives_again_instead_of_failing(
    catalog: Catalog, her2_cases: tuple[Path, dict[str, Her2SampleCase]], tmp_path: Path
) -> None:
    """The decision read the study before a slide arrived: the slide reopens it for good.

    (With 0 s completion timers this race failed a study whose last, scoreable instance
    arrived while completion was failing it for having only coarse levels.)
    """
    root, cases = her2_cases
    files = restudy(_files(root, cases["HER2-DEMO-01"], "he"), tmp_path / "he", "reopened")
    *first, last = files
    uid = _record(catalog, first)

    class Racing(StudyLifecycle):
        def _level_decides(self) -> bool:  # decided, then the last instance arrives
            _record(self.catalog, [last])
            return True

    lifecycle = Racing(catalog, RowSubmitter(JobStore(catalog), 3), 0.25)
    assert lifecycle.complete(uid, "stable")
    study = catalog.study(uid)
    assert study is not None and study.state == StudyState.RECEIVING
    assert study.state_reason == "reopened: new whole-slide instance"


@pytest.mark.unit
def test_an_unreadable_header_routes_as_an_undescribed_series_of_its_class(
    tmp_path: Path,
) -> None:
    """The router and ``ihgamp score`` read headers through one function."""
    from gateway.routing import routing_header
    from ihgamp_core.analysis import MetadataRules, Stain, series_metadata_from_dataset

    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not DICOM at all")
    ct = "1.2.840.10008.5.1.4.1.1.2"
    ds, error = routing_header(broken, ct, "CT")
    assert error and (ds.SOPClassUID, ds.Modality) == (ct, "CT")
    meta = series_metadata_from_dataset(ds, MetadataRules(), key="1.2.3")
    assert (meta.key, meta.modality, meta.stain) == ("1.2.3", "CT", Stain.UNKNOWN)
    header = pydicom.Dataset()
    header.SOPClassUID, header.Modality, header.SeriesInstanceUID = ct, "CT", "1.2.3.4"
    header.SOPInstanceUID = "1.2.3.4.1"
    header.file_meta = pydicom.dataset.FileMetaDataset()
    header.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    good = tmp_path / "good.dcm"
    header.save_as(good, enforce_file_format=True)
    read, none = routing_header(good, "ignored")
    assert none is None and read.SeriesInstanceUID == "1.2.3.4" and read.SOPClassUID == ct
