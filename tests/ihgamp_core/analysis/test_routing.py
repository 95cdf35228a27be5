"""Routing: which analyses apply to a study, on which slides, and typed refusals."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from ihgamp_core.analysis import (
    AnalysisName,
    AnalysisSpec,
    Applicability,
    InputKind,
    MetadataRules,
    ModalityPath,
    RefusalKind,
    SeriesMetadata,
    SlideRole,
    Stain,
    StainRule,
    classify_stain,
    route,
    series_metadata_from_dataset,
    series_metadata_from_properties,
)
from ihgamp_core.errors import ParameterError
from ihgamp_core.her2.analysis import HER2_APPLICABILITY
from ihgamp_core.hrd.analysis import HRD_APPLICABILITY

pytestmark = pytest.mark.unit

HRD = AnalysisSpec(AnalysisName.HRD, HRD_APPLICABILITY)
HER2 = AnalysisSpec(AnalysisName.HER2, HER2_APPLICABILITY)
BOTH = (HER2, HRD)


def slide(
    key: str,
    stain: Stain,
    block: str | None = None,
    body: str | None = "BREAST",
    modality: str = "SM",
    description: str | None = None,
) -> SeriesMetadata:
    return SeriesMetadata(key, modality, stain, "test", body, block, description)


def test_he_breast_study_triggers_her2_and_hrd() -> None:
    decision = route([slide("he", Stain.HE, "A1")], BOTH)
    assert not decision.refusals and not decision.no_analysis_applies
    (her2,) = decision.for_analysis(AnalysisName.HER2)
    (hrd,) = decision.for_analysis(AnalysisName.HRD)
    assert her2.path is ModalityPath.HE_ONLY and her2.slide_keys() == ("he",)
    assert hrd.slide_keys() == ("he",) and hrd.path is None
    assert her2.job_key == "her2:A1" and hrd.job_key == "hrd:A1"


def test_he_and_ihc_of_one_block_are_one_dual_her2_job_and_hrd_reads_only_the_he() -> None:
    decision = route([slide("ihc", Stain.IHC_HER2, "A1"), slide("he", Stain.HE, "A1")], BOTH)
    (her2,) = decision.for_analysis(AnalysisName.HER2)
    assert her2.path is ModalityPath.DUAL and her2.pairing == "block"
    assert her2.slide_keys(SlideRole.HE) == ("he",) and her2.slide_keys(SlideRole.IHC) == ("ihc",)
    (hrd,) = decision.for_analysis(AnalysisName.HRD)
    assert hrd.slide_keys() == ("he",)


def test_ihc_only_study_triggers_her2_only() -> None:
    decision = route([slide("ihc", Stain.IHC_HER2, "B2")], BOTH)
    (her2,) = decision.requests
    assert her2.analysis is AnalysisName.HER2 and her2.path is ModalityPath.IHC_ONLY
    assert [s.analysis for s in decision.skipped] == [AnalysisName.HRD]


def test_study_matching_nothing_is_no_analysis_applies_not_an_error() -> None:
    other = [slide("ki67", Stain.IHC_OTHER), slide("sr", Stain.HE, modality="SR")]
    decision = route(other, BOTH)
    assert decision.no_analysis_applies
    assert decision.ignored == ("sr",)
    assert {s.analysis for s in decision.skipped} == {AnalysisName.HER2, AnalysisName.HRD}
    assert decision.to_dict()["no_analysis_applies"] is True


def test_non_breast_he_gets_hrd_but_not_her2_with_the_reason() -> None:
    decision = route([slide("he", Stain.HE, body="OVARY")], BOTH)
    assert [r.analysis for r in decision.requests] == [AnalysisName.HRD]
    (skip,) = decision.skipped
    assert skip.analysis is AnalysisName.HER2 and "OVARY" in skip.reason
    unknown_body = route([slide("he", Stain.HE, body=None)], BOTH)
    assert [r.analysis for r in unknown_body.requests] == [AnalysisName.HRD]


def test_unknown_stain_is_refused_and_the_rest_still_scored() -> None:
    decision = route([slide("he", Stain.HE, "A1"), slide("x", Stain.UNKNOWN, "A1")], BOTH)
    (refusal,) = decision.refusals
    assert refusal.kind is RefusalKind.UNKNOWN_STAIN and refusal.slides == ("x",)
    assert "stain unknown" in refusal.message and "\n" not in refusal.message
    assert {r.analysis for r in decision.requests} == {AnalysisName.HER2, AnalysisName.HRD}
    assert not decision.no_analysis_applies


def test_ihc_without_he_partner_in_a_study_with_he_is_refused() -> None:
    decision = route(
        [
            slide("he-a", Stain.HE, "A1"),
            slide("ihc-a", Stain.IHC_HER2, "A1"),
            slide("ihc-b", Stain.IHC_HER2, "B1"),
        ],
        BOTH,
    )
    (refusal,) = decision.refusals
    assert refusal.kind is RefusalKind.UNPAIRED_IHC and refusal.slides == ("ihc-b",)
    assert "block B1" in refusal.message
    (her2,) = decision.for_analysis(AnalysisName.HER2)
    assert her2.path is ModalityPath.DUAL and her2.slide_keys() == ("he-a", "ihc-a")


def test_mismatched_blocks_refuse_the_pair_but_hrd_still_runs() -> None:
    decision = route([slide("he", Stain.HE, "A1"), slide("ihc", Stain.IHC_HER2, "B7")], BOTH)
    (refusal,) = decision.refusals
    assert refusal.kind is RefusalKind.MISMATCHED_BLOCKS
    assert set(refusal.slides) == {"he", "ihc"} and refusal.analysis is AnalysisName.HER2
    assert "A1" in refusal.message and "B7" in refusal.message
    assert not decision.for_analysis(AnalysisName.HER2)
    assert [r.slide_keys() for r in decision.for_analysis(AnalysisName.HRD)] == [("he",)]


def test_without_block_ids_a_single_pair_is_dual_and_more_is_ambiguous() -> None:
    pair = route([slide("he", Stain.HE), slide("ihc", Stain.IHC_HER2)], (HER2,))
    (request,) = pair.requests
    assert request.path is ModalityPath.DUAL and request.pairing == "single-pair"
    many = route(
        [slide("he1", Stain.HE), slide("he2", Stain.HE), slide("ihc", Stain.IHC_HER2)], (HER2,)
    )
    assert not many.requests
    assert many.refusals[0].kind is RefusalKind.AMBIGUOUS_PAIRING
    two_he = route([slide("he1", Stain.HE), slide("he2", Stain.HE)], (HER2,))
    assert [r.path for r in two_he.requests] == [ModalityPath.HE_ONLY] * 2


def test_two_slides_of_one_stain_in_a_block_are_not_chosen_between() -> None:
    decision = route(
        [
            slide("he1", Stain.HE, "A1"),
            slide("he2", Stain.HE, "A1"),
            slide("ihc", Stain.IHC_HER2, "A1"),
        ],
        (HER2,),
    )
    assert not decision.requests
    assert decision.refusals[0].kind is RefusalKind.AMBIGUOUS_PAIRING


def test_series_description_patterns_select_slides() -> None:
    spec = AnalysisSpec(
        AnalysisName.HRD,
        Applicability(stains=frozenset({Stain.HE}), series_description_patterns=(r"\bdiag",)),
    )
    decision = route(
        [
            slide("a", Stain.HE, description="Diagnostic H&E"),
            slide("b", Stain.HE, description="Frozen section"),
        ],
        (spec,),
    )
    assert decision.requests[0].slide_keys() == ("a",)


def test_applicability_is_validated_on_construction() -> None:
    with pytest.raises(ParameterError, match="unknown stain"):
        Applicability(stains=frozenset({Stain.UNKNOWN}))
    with pytest.raises(ParameterError, match="H&E and HER2 IHC"):
        Applicability(stains=frozenset({Stain.IHC_OTHER}), inputs=InputKind.HE_WITH_OPTIONAL_IHC)
    with pytest.raises(ParameterError, match="pattern"):
        Applicability(stains=frozenset({Stain.HE}), series_description_patterns=("(",))
    with pytest.raises(ParameterError, match="upper case"):
        Applicability(stains=frozenset({Stain.HE}), body_parts=frozenset({"breast"}))
    with pytest.raises(ParameterError, match="group named 'block'"):
        MetadataRules(block_pattern=r"(\d+)")


@pytest.mark.parametrize(
    ("texts", "stain"),
    [
        (["hematoxylin stain", "water soluble eosin stain"], Stain.HE),
        (["H&E"], Stain.HE),
        (["anti-HER2/neu (4B5) rabbit monoclonal antibody", "DAB"], Stain.IHC_HER2),
        (["HercepTest"], Stain.IHC_HER2),
        (["c-erbB-2 antibody"], Stain.IHC_HER2),
        (["Ki-67 (MIB-1) antibody", "hematoxylin"], Stain.IHC_OTHER),
        (["hematoxylin stain"], Stain.UNKNOWN),
        (["the slide he scanned"], Stain.UNKNOWN),
        ([], Stain.UNKNOWN),
        (["hematoxylin", "eosin", "anti-HER2 antibody"], Stain.UNKNOWN),  # conflicting
        (["Zzdye"], Stain.UNKNOWN),
    ],
)
def test_classify_stain(texts: list[str], stain: Stain) -> None:
    assert classify_stain(texts) is stain


def test_the_default_stain_is_only_for_slides_without_any_stain_description() -> None:
    site = MetadataRules(default_stain=Stain.HE)
    for said in ("Zzdye", "PAS", "Masson trichrome"):
        meta = series_metadata_from_properties("/s.svs", {"aperio.Stain": said}, site)
        assert meta.stain is Stain.UNKNOWN and meta.stain_text == (said,)
        (refusal,) = route([meta], (HRD,)).refusals
        assert refusal.kind is RefusalKind.UNKNOWN_STAIN and said in refusal.message
    both = series_metadata_from_properties("/s.svs", {"aperio.Stain": "H&E + HER2 (4B5)"}, site)
    assert both.stain is Stain.UNKNOWN and both.stain_conflict == (Stain.HE, Stain.IHC_HER2)
    (refusal,) = route([both], BOTH).refusals
    assert refusal.kind is RefusalKind.CONFLICTING_STAIN
    # A title that names no stain is not a stain description: the default applies.
    titled = series_metadata_from_properties("/s.svs", {"aperio.Title": "case 12"}, site)
    assert titled.stain is Stain.HE and titled.stain_source == "default"
    # A site rule on the description itself names a stain the classifier does not know.
    rule = StainRule("phloxine", Stain.HE, fields=("stain",))
    hps = series_metadata_from_properties(
        "/s.svs", {"aperio.Stain": "hematoxylin phloxine saffron"}, MetadataRules((rule,))
    )
    assert hps.stain is Stain.HE and hps.stain_source == "rule"


def test_stain_and_body_part_from_a_real_dicom_header(samples_root: Path) -> None:
    path = next((samples_root / "dicom" / "DEMO-001").rglob("*.dcm"))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    meta = series_metadata_from_dataset(ds)
    assert meta.stain is Stain.HE and meta.stain_source == "specimen-preparation"
    assert meta.key == str(ds.SeriesInstanceUID) and meta.modality == "SM"
    assert meta.body_part is None and meta.block is None
    ruled = series_metadata_from_dataset(
        ds,
        MetadataRules(block_pattern=r"^(?P<block>CNT-DEMO-\d+)-", default_body_part="OVARY"),
    )
    assert ruled.block == "CNT-DEMO-0001" and ruled.body_part == "OVARY"


def test_rules_fill_in_and_can_override_the_headers(samples_root: Path) -> None:
    path = next((samples_root / "dicom" / "DEMO-001").rglob("*.dcm"))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ds.SeriesDescription = "HER2 4B5"
    kept = series_metadata_from_dataset(ds, MetadataRules((StainRule(r"HER2", Stain.IHC_HER2),)))
    assert kept.stain is Stain.HE  # the header wins over a non-overriding rule
    overridden = series_metadata_from_dataset(
        ds, MetadataRules((StainRule(r"HER2", Stain.IHC_HER2, overrides=True),))
    )
    assert overridden.stain is Stain.IHC_HER2 and overridden.stain_source == "rule"
    del ds.SpecimenDescriptionSequence
    assert series_metadata_from_dataset(ds).stain is Stain.UNKNOWN
    assert series_metadata_from_dataset(ds, MetadataRules(default_stain=Stain.HE)).stain_source == (
        "default"
    )


def test_vendor_metadata_and_path_rules() -> None:
    meta = series_metadata_from_properties(
        "/slides/case1_block2.svs", {"aperio.Stain": "HER2 (4B5)", "aperio.Title": "breast"}
    )
    assert meta.stain is Stain.IHC_HER2 and meta.stain_source == "vendor-metadata"
    assert meta.body_part == "BREAST"
    bare = series_metadata_from_properties(
        "/slides/S1_A2_HE.svs",
        {"openslide.vendor": "aperio"},
        MetadataRules(
            (StainRule(r"_HE\.svs$", Stain.HE, fields=("source",)),),
            block_pattern=r"(?P<block>S1_A\d)",
        ),
    )
    assert bare.stain is Stain.HE and bare.stain_source == "rule" and bare.block == "S1_A2"


def test_a_study_over_the_caps_is_refused_not_cut_to_a_subset() -> None:
    from ihgamp_core.analysis import RoutingLimits

    many = [slide(f"he-{i:03d}", Stain.HE, f"B{i:03d}") for i in range(300)]
    whole = route(many, BOTH, RoutingLimits(max_slides=20))
    (refusal,) = whole.refusals
    assert refusal.kind is RefusalKind.TOO_MANY_SLIDES and len(refusal.slides) == 300
    assert not whole.requests and "300 slides" in refusal.message
    # Within the slide cap, a per-block analysis over its block cap is refused alone.
    twelve = many[:12]
    decision = route(twelve, BOTH, RoutingLimits(max_slides=20, max_requests=10))
    (her2,) = decision.refusals
    assert her2.kind is RefusalKind.TOO_MANY_SLIDES and her2.analysis is AnalysisName.HER2
    assert [r.analysis for r in decision.requests] == [AnalysisName.HRD]
    assert len(route(twelve, BOTH).requests) == 13  # no limits: 12 blocks + HRD
    with pytest.raises(ParameterError, match="at least 1"):
        RoutingLimits(max_slides=0)
