"""Inputs beyond slides: volume and segmentation series routed to analyses that read them."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from ihgamp_core.analysis import (
    AnalysisName,
    AnalysisSpec,
    Applicability,
    InputKind,
    SeriesInput,
    SeriesKind,
    SeriesMetadata,
    SlideRole,
    Stain,
    request_slides,
    route,
    series_kind,
    series_metadata_from_dataset,
)
from ihgamp_core.errors import ParameterError
from ihgamp_core.hrd.analysis import HRD_APPLICABILITY

pytestmark = pytest.mark.unit

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
SR = "1.2.840.10008.5.1.4.1.1.88.34"
HRD = AnalysisSpec(AnalysisName.HRD, HRD_APPLICABILITY)
RADIOMICS = AnalysisSpec(
    "radiomics",
    Applicability(
        inputs=InputKind.SERIES,
        modalities=frozenset({"CT", "MR"}),
        series_kinds=frozenset({SeriesKind.VOLUME, SeriesKind.SEGMENTATION}),
        body_parts=frozenset({"ABDOMEN", "PELVIS"}),
    ),
)


def series(
    key: str, kind: SeriesKind, modality: str, body: str | None = "ABDOMEN"
) -> SeriesMetadata:
    sop = {SeriesKind.VOLUME: CT_IMAGE, SeriesKind.SEGMENTATION: SEG}.get(kind, SR)
    return SeriesMetadata(
        key, modality, Stain.UNKNOWN, body_part=body, kind=kind, sop_class_uid=sop
    )


def he(key: str) -> SeriesMetadata:
    return SeriesMetadata(key, "SM", Stain.HE, "test", "OVARY")


def test_series_kinds_come_from_the_sop_class() -> None:
    assert series_kind(CT_IMAGE) is SeriesKind.VOLUME
    assert series_kind(MR_IMAGE) is SeriesKind.VOLUME
    assert series_kind(SEG) is SeriesKind.SEGMENTATION
    assert series_kind("1.2.840.10008.5.1.4.1.1.77.1.6") is SeriesKind.SLIDE
    assert series_kind(SR) is SeriesKind.OTHER and series_kind(None) is SeriesKind.OTHER


def test_a_ct_header_is_a_volume_without_a_stain_even_with_a_default_stain() -> None:
    from ihgamp_core.analysis import MetadataRules

    ds = Dataset()
    ds.SOPClassUID, ds.SeriesInstanceUID, ds.Modality = CT_IMAGE, "1.2.3", "CT"
    ds.BodyPartExamined, ds.SeriesDescription = "ABDOMEN", "Portal venous 1.0"
    rules = MetadataRules(default_stain=Stain.HE, default_body_part="BREAST")
    meta = series_metadata_from_dataset(ds, rules)
    assert (meta.kind, meta.stain, meta.modality, meta.body_part) == (
        SeriesKind.VOLUME,
        Stain.UNKNOWN,
        "CT",
        "ABDOMEN",
    )
    assert meta.sop_class_uid == CT_IMAGE and meta.series_description == "Portal venous 1.0"
    del ds.BodyPartExamined  # the site's default body part is for slides only
    assert series_metadata_from_dataset(ds, rules).body_part is None


def test_a_volume_analysis_gets_its_volume_and_segmentation_and_hrd_its_slide() -> None:
    study = [
        he("slide"),
        series("seg", SeriesKind.SEGMENTATION, "SEG"),
        series("ct", SeriesKind.VOLUME, "CT"),
        series("report", SeriesKind.OTHER, "SR"),
    ]
    decision = route(study, [HRD, RADIOMICS])
    assert not decision.refusals  # no "unknown stain" for a CT
    hrd, radiomics = decision.requests
    assert hrd.slide_keys() == ("slide",)
    assert radiomics.analysis == "radiomics" and radiomics.job_key == "radiomics"
    assert [(r.key, r.role) for r in radiomics.slides] == [
        ("ct", SlideRole.VOLUME),
        ("seg", SlideRole.SEGMENTATION),
    ]
    assert decision.ignored == ("report",)


def test_a_ct_study_with_only_slide_analyses_is_no_analysis_applies() -> None:
    decision = route([series("ct", SeriesKind.VOLUME, "CT")], [HRD])
    assert decision.no_analysis_applies and decision.ignored == ("ct",)
    decision = route([series("ct", SeriesKind.VOLUME, "CT", body="HEAD")], [RADIOMICS])
    assert decision.no_analysis_applies
    assert decision.skipped[0].reason == "body part HEAD is not among ['ABDOMEN', 'PELVIS']"
    decision = route([series("pet", SeriesKind.VOLUME, "PT")], [RADIOMICS])
    assert decision.skipped[0].reason.startswith("no series it reads (segmentation, volume")


def test_what_an_analysis_reads_is_validated_on_construction() -> None:
    volumes = frozenset({SeriesKind.VOLUME})
    with pytest.raises(ParameterError, match="reads no slide reads no stain"):
        Applicability(frozenset({Stain.HE}), InputKind.SERIES, series_kinds=volumes)
    with pytest.raises(ParameterError, match="not as SERIES"):
        Applicability(inputs=InputKind.SERIES)
    with pytest.raises(ParameterError, match="slides analyses read slides"):
        Applicability(frozenset({Stain.HE}), series_kinds=volumes)
    with pytest.raises(ParameterError, match=r"names their modalities \(CT, MR, PT\), not SM"):
        Applicability(inputs=InputKind.SERIES, series_kinds=volumes)
    ct = frozenset({"CT"})
    with pytest.raises(ParameterError, match="SOP class it reads must be of a series kind"):
        Applicability(
            inputs=InputKind.SERIES,
            series_kinds=volumes,
            modalities=ct,
            sop_classes=frozenset({SEG}),
        )
    reads = Applicability(inputs=InputKind.SERIES, series_kinds=volumes, modalities=ct)
    assert reads.reads_sop_class(CT_IMAGE) and not reads.reads_sop_class(SEG)


def test_a_slide_analysis_given_a_volume_refuses_it() -> None:
    from pathlib import Path

    from ihgamp_core.analysis import AnalysisRequest, SlideRef

    request = AnalysisRequest("hrd", (SlideRef("ct", SlideRole.HE),))
    volume = SeriesInput("ct", SeriesKind.VOLUME, (Path("a.dcm"),))
    with pytest.raises(ParameterError, match="series ct is a volume, not a slide"):
        request_slides(request, {"ct": volume})
    with pytest.raises(ParameterError, match="were not opened"):
        request_slides(request, {})


def test_too_many_slides_refuses_the_slides_not_the_volume() -> None:
    from ihgamp_core.analysis import RefusalKind, RoutingLimits

    study = [he(f"slide-{i}") for i in range(3)] + [series("ct", SeriesKind.VOLUME, "CT")]
    decision = route(study, [HRD, RADIOMICS], RoutingLimits(max_slides=2))
    assert [r.kind for r in decision.refusals] == [RefusalKind.TOO_MANY_SLIDES]
    assert [r.analysis for r in decision.requests] == ["radiomics"]


def test_the_contracts_sop_class_uids_are_pydicoms() -> None:
    """Written out so that importing the contract does not import pydicom; the same values."""
    from pydicom import uid

    from ihgamp_core.analysis.contract import SOP_CLASSES

    assert {name: str(getattr(uid, name)) for name in SOP_CLASSES} == SOP_CLASSES
