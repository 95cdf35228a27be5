"""Scoring whole cases: DICOM vs SVS, QC flags, result serialisation."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ihgamp_core.embed import BackboneIdentity, OpenClipBackbone
from ihgamp_core.errors import BackboneMismatchError, ParameterError
from ihgamp_core.head import HeadArtifact
from ihgamp_core.hrd.engine import Engine, ScoringOptions, embed_slide
from ihgamp_core.hrd.result import (
    Call,
    QCFlag,
    result_from_dict,
    result_to_dict,
    result_to_json,
)
from ihgamp_core.slide import discover_slides, open_slide
from ihgamp_core.synthetic.samples import SampleCase

FEW = ScoringOptions(max_tiles=3, min_tiles=1, batch_size=3)


def _score(engine: Engine, paths: list[Path], case_id: str, options: ScoringOptions = FEW):
    with ExitStack() as stack:
        slides = [stack.enter_context(s.open()) for s in discover_slides(paths)]
        return engine.score_case(slides, case_id, options)


@pytest.mark.slow
def test_dicom_and_svs_copies_give_the_same_tiles_and_embeddings(
    engine: Engine,
    backbone: OpenClipBackbone,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> None:
    case = sample_cases["DEMO-001"]
    preset = engine.preset(FEW)
    with (
        open_slide(samples_root / case.svs[0]) as svs,
        open_slide(samples_root / case.dicom[0]) as dcm,
    ):
        a = embed_slide(svs, backbone, preset, batch_size=3)
        b = embed_slide(dcm, backbone, preset, batch_size=3)
    assert a.plan.n_tiles == 3
    assert a.plan.cols.tolist() == b.plan.cols.tolist()
    assert a.plan.rows.tolist() == b.plan.rows.tolist()
    # Stated tolerance: the two readers decode the same JPEG tiles, so 1e-4 absolute.
    np.testing.assert_allclose(a.features, b.features, atol=1e-4)


@pytest.mark.slow
def test_case_result_fields_and_call(
    engine: Engine, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    case = sample_cases["DEMO-001"]
    result = _score(engine, [samples_root / case.dicom[0]], "DEMO-001")
    assert result.n_tiles == 3 and result.qc_flags == ()
    assert result.probability is not None and 0.0 <= result.probability <= 1.0
    expected = Call.HRD_LIKELY if result.probability >= result.threshold else Call.HRD_UNLIKELY
    assert result.call == expected
    (slide,) = result.slides
    assert slide.tiles_used == 3 and slide.tissue_tiles >= 3 and slide.grid_tiles > 3
    assert 0.0 < slide.tissue_fraction < 1.0
    assert slide.tiles is not None and len(slide.tiles) == 3
    # The linear head: the mean tile score is the case score.
    assert slide.tiles.score.mean() == pytest.approx(result.score)
    assert result.model.demo and "not for clinical use" in result.model.display_name
    assert result.tiling["max_tiles"] == 3 and result.tiling["max_tiles_trained"] == 2000
    assert result.timings.total_s >= result.timings.embedding_s > 0
    assert (result.runtime.device, result.runtime.precision) == ("cpu", "fp32")
    assert result.runtime.pipeline == "fast" and result.runtime.batch_size == FEW.batch_size


@pytest.mark.slow
def test_result_json_round_trip(
    engine: Engine, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    case = sample_cases["DEMO-002"]
    result = _score(engine, [samples_root / rel for rel in case.dicom], "DEMO-002")
    assert len(result.slides) == 2 and result.n_tiles == 6
    text = result_to_json(result)
    back = result_from_dict(json.loads(text))
    assert result_to_dict(back) == result_to_dict(result)
    assert back.call == result.call and back.slides[1].info == result.slides[1].info
    assert back.runtime == result.runtime
    assert back.slides[1].resampled  # the 40x slide was downsampled
    small = result_to_dict(result, include_tiles=False)
    assert all(s["tiles"] is None for s in small["slides"])


@pytest.mark.slow
def test_slide_without_20x_level_is_a_qc_flag_not_a_score(
    engine: Engine, slide_factory: Callable[..., Path]
) -> None:
    low = slide_factory(base_mpp=1.0, downsamples=(1,), width_um=1024, height_um=1024)
    result = _score(engine, [low], "LOW")
    assert result.call == Call.NO_CALL
    assert QCFlag.NO_USABLE_LEVEL in result.qc_flags and QCFlag.TOO_FEW_TILES in result.qc_flags
    assert result.probability is None and result.n_tiles == 0
    assert result.slides[0].qc_flags == (QCFlag.NO_USABLE_LEVEL,)


@pytest.mark.slow
def test_too_few_tiles_and_norm_range_are_qc_flags(
    backbone: OpenClipBackbone,
    demo_head: HeadArtifact,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> None:
    narrow = replace(
        demo_head, metadata=replace(demo_head.metadata, embedding_norm_range=(0.0, 1.0))
    )
    engine = Engine(backbone, narrow)
    case = sample_cases["DEMO-001"]
    result = _score(engine, [samples_root / case.dicom[0]], "X", replace(FEW, min_tiles=5))
    assert set(result.qc_flags) == {QCFlag.TOO_FEW_TILES, QCFlag.EMBEDDING_NORM_OUT_OF_RANGE}
    assert result.call == Call.NO_CALL and result.probability is not None


@pytest.mark.unit
def test_engine_refuses_a_head_from_another_backbone(
    backbone: OpenClipBackbone, demo_head: HeadArtifact
) -> None:
    other = replace(
        demo_head.metadata,
        backbone=BackboneIdentity("open_clip/ViT-B-16", "sha256:" + "0" * 64, 512),
    )
    with pytest.raises(BackboneMismatchError, match="random-init-seed-0"):
        Engine(backbone, replace(demo_head, metadata=other))


@pytest.mark.unit
def test_options_are_validated() -> None:
    with pytest.raises(ParameterError, match="max-tiles"):
        ScoringOptions(max_tiles=0)
    with pytest.raises(ParameterError):
        ScoringOptions(batch_size=-1)
    with pytest.raises(ParameterError):
        ScoringOptions(workers=0)
    automatic = ScoringOptions()
    assert automatic.batch_for("cuda:0") == 256
    assert automatic.batch_for("cpu") == 8
    assert ScoringOptions(batch_size=7).batch_for("cuda") == 7


@pytest.mark.unit
@pytest.mark.parametrize("bad", [{}, {"schema": "other"}, {"schema": "ihgamp-result/1"}])
def test_result_reader_rejects_incomplete_documents(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        result_from_dict(bad)
