"""The fast pipeline against the reference path, on the CPU equivalents of the GPU steps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from ihgamp_core.embed import OpenClipBackbone, make_preprocessor
from ihgamp_core.embed.decode import TileDecodeError, decode_jpeg_batch, is_jpeg
from ihgamp_core.embed.extract import (
    decode_tile,
    embed_plan,
    read_encoded_planned_tile,
    read_planned_tile,
)
from ihgamp_core.embed.pipeline import PipelineOptions, embed_slides
from ihgamp_core.embed.tensor_preprocess import make_tensor_preprocessor
from ihgamp_core.errors import SlideReadError
from ihgamp_core.head import HeadArtifact
from ihgamp_core.hrd.engine import Engine, ScoringOptions
from ihgamp_core.params import get_preset
from ihgamp_core.slide import open_slide
from ihgamp_core.synthetic.samples import SampleCase
from ihgamp_core.tiling import TilePlan, plan_tiles

pytestmark = pytest.mark.integration

PAPER = get_preset("paper")


def _planner(max_tiles: int) -> Callable[..., TilePlan]:
    tiling = PAPER.with_max_tiles(max_tiles).tiling
    return lambda slide: plan_tiles(slide, tiling)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(
        (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)), dtype=float
    )


@pytest.mark.parametrize("preset", ["paper", "ihgamp-code"])
def test_tensor_preprocessing_matches_the_pillow_transform(
    preset: str, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    params = get_preset(preset).preprocess
    with open_slide(samples_root / sample_cases["DEMO-001"].svs[0]) as slide:
        plan = _planner(8)(slide)
        tiles = [read_planned_tile(slide, plan, i) for i in range(plan.n_tiles)]
    reference = make_preprocessor(params)(tiles).numpy()
    batch = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).contiguous()
    fast = make_tensor_preprocessor(params)(batch).numpy()
    assert fast.shape == reference.shape == (8, 3, 224, 224)
    # One uint8 step is 1/255/std ~ 0.015 after normalisation; Pillow rounds between passes.
    assert np.abs(fast - reference).mean() < 0.01
    assert np.abs(fast - reference).max() < 0.1


def test_cpu_batch_decode_equals_pillow(
    samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    with open_slide(samples_root / sample_cases["DEMO-001"].dicom[0]) as slide:
        plan = _planner(6)(slide)
        data = [read_encoded_planned_tile(slide, plan, i) for i in range(plan.n_tiles)]
    assert all(d is not None and is_jpeg(d) for d in data)
    encoded = [d for d in data if d is not None]
    batch = decode_jpeg_batch(encoded, "cpu")
    assert batch.shape == (6, 3, 256, 256) and batch.dtype == torch.uint8
    for i, d in enumerate(encoded):
        assert np.array_equal(batch[i].permute(1, 2, 0).numpy(), decode_tile(d))
    with pytest.raises(TileDecodeError):
        decode_jpeg_batch([encoded[0][:200]], "cpu")


@pytest.mark.parametrize("kind", ["dicom", "svs"])
def test_fast_path_matches_the_reference_path(
    kind: str,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
    backbone: OpenClipBackbone,
    cmu_svs: Path,
) -> None:
    demo2 = sample_cases["DEMO-002"]
    paths = [
        samples_root / getattr(sample_cases["DEMO-001"], kind)[0],
        samples_root / getattr(demo2, kind)[1],  # 40x without a 20x level: pixel path
    ]
    if kind == "svs":
        paths.append(cmu_svs)  # real H&E, 240 px tiles: pixel path
    slides = [open_slide(p) for p in paths]
    try:
        planner = _planner(12)
        run = embed_slides(
            slides, planner, backbone, PAPER.preprocess, PipelineOptions(batch_size=5, prefetch=3)
        )
        preprocess = make_preprocessor(PAPER.preprocess)
        cosines = []
        for slide, emb in zip(slides, run.embeddings, strict=True):
            assert emb is not None
            reference = embed_plan(slide, planner(slide), backbone, preprocess, batch_size=12)
            assert np.array_equal(emb.plan.cols, reference.plan.cols)
            cosines.append(_cosine(emb.features, reference.features))
    finally:
        for slide in slides:
            slide.close()
    every = np.concatenate(cosines)
    assert every.mean() >= 0.999, every
    assert every.min() >= 0.99, every
    assert run.compressed_tiles == 12  # the 20x slide's stored JPEG tiles
    assert run.pixel_tiles == 12 * (len(paths) - 1)
    stages = run.stages  # where the time went, every stage accounted for
    assert stages.planning_s == run.planning_s > 0
    assert stages.read_s > 0 and stages.cpu_decode_s > 0  # CPU decode of the stored tiles
    assert stages.preprocess_s > 0 and stages.backbone_s > 0
    assert stages.gpu_decode_s == 0 and run.gpu_decoded_tiles == 0
    main_thread = stages.wait_s + stages.gpu_decode_s + stages.preprocess_s + stages.backbone_s
    assert main_thread <= run.wall_s
    assert set(stages.to_dict()) == {
        "planning_s",
        "read_s",
        "cpu_decode_s",
        "wait_s",
        "gpu_decode_s",
        "preprocess_s",
        "backbone_s",
    }


def test_case_probabilities_agree_to_three_decimals(
    engine: Engine, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    for case_id in ("DEMO-001", "DEMO-002"):
        case = sample_cases[case_id]
        slides = [open_slide(samples_root / p) for p in case.dicom]
        try:
            fast = engine.score_case(slides, case_id, ScoringOptions(max_tiles=16, min_tiles=1))
            ref = engine.score_case(
                slides, case_id, ScoringOptions(max_tiles=16, min_tiles=1, path="reference")
            )
        finally:
            for slide in slides:
                slide.close()
        assert fast.probability is not None and ref.probability is not None
        assert abs(fast.probability - ref.probability) < 5e-4, (case_id, fast, ref)
        assert fast.call == ref.call and fast.n_tiles == ref.n_tiles


def test_int8_cpu_backbone_stays_within_the_equivalence_bound(
    backbone: OpenClipBackbone,
    demo_head: HeadArtifact,
    samples_root: Path,
    sample_cases: dict[str, SampleCase],
) -> None:
    quantised = OpenClipBackbone(device="cpu", precision="int8")
    assert quantised.identity == backbone.identity  # same weights, faster arithmetic
    int8_engine = Engine(quantised, demo_head)
    fp32_engine = Engine(backbone, demo_head)
    options = ScoringOptions(max_tiles=16, min_tiles=1)
    cosines = []
    for case_id in ("DEMO-001", "DEMO-002"):
        slides = [open_slide(samples_root / p) for p in sample_cases[case_id].dicom]
        try:
            a = embed_slides(slides, _planner(16), backbone, PAPER.preprocess)
            b = embed_slides(slides, _planner(16), quantised, PAPER.preprocess)
            fp32 = fp32_engine.score_case(slides, case_id, options)
            int8 = int8_engine.score_case(slides, case_id, options)
        finally:
            for slide in slides:
                slide.close()
        for ea, eb in zip(a.embeddings, b.embeddings, strict=True):
            assert ea is not None and eb is not None
            cosines.append(_cosine(ea.features, eb.features))
        assert fp32.probability is not None and int8.probability is not None
        # int8 arithmetic approximates fp32 (unlike the fast path, which must agree to
        # rounding), so the bound is looser: half a percentage point of probability.
        assert abs(fp32.probability - int8.probability) < 5e-3, (case_id, fp32, int8)
        assert fp32.call == int8.call
    every = np.concatenate(cosines)
    assert every.mean() >= 0.999, every
    assert every.min() >= 0.99, every


def test_unknown_or_misplaced_precisions_are_refused() -> None:
    from ihgamp_core.errors import ParameterError

    with pytest.raises(ParameterError, match="unknown precision"):
        OpenClipBackbone(device="cpu", precision="int4")  # type: ignore[arg-type]


def test_a_truncated_slide_fails_cleanly_mid_pipeline(
    tmp_path: Path, slide_factory: Callable[..., Path], backbone: OpenClipBackbone
) -> None:
    import tifffile

    good = slide_factory()
    data = bytearray(good.read_bytes())
    with tifffile.TiffFile(good) as tif:  # cut every level-0 JPEG tile short
        page = tif.pages[0]
        for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
            data[offset + count // 2 : offset + count] = bytes(count - count // 2)
    broken = tmp_path / "broken.svs"
    broken.write_bytes(data)
    with (
        open_slide(good) as first,
        open_slide(broken) as second,
        pytest.raises(SlideReadError, match="damaged or truncated"),
    ):
        embed_slides([first, second], _planner(8), backbone, PAPER.preprocess)


def test_pipeline_options_are_validated() -> None:
    from ihgamp_core.errors import ParameterError

    with pytest.raises(ParameterError):
        PipelineOptions(batch_size=0)
    with pytest.raises(ParameterError):
        ScoringOptions(path="turbo")  # type: ignore[arg-type]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_decode_matches_cpu_decode(
    samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    with open_slide(samples_root / sample_cases["DEMO-001"].dicom[0]) as slide:
        plan = _planner(64)(slide)
        data = [read_encoded_planned_tile(slide, plan, i) for i in range(plan.n_tiles)]
    encoded = [d for d in data if d is not None]
    cpu = decode_jpeg_batch(encoded, "cpu").int()
    gpu = decode_jpeg_batch(encoded, "cuda").cpu().int()
    assert (cpu - gpu).abs().float().mean() < 1.0
