"""The engine against the reference path: per-tile cosine, the worst tiles and why, cases.

The reference path is the paper's: tiles decoded by the slide library (OpenSlide,
wsidicom), open_clip's own Pillow transform, the backbone in fp32. The engine reads
stored JPEG tiles, decodes them in batches (nvJPEG on CUDA), preprocesses with tensor
operations and runs the backbone at its precision (fp16/bf16 autocast on CUDA).

For each engine precision, :func:`equivalence` reports the mean and minimum cosine over
``--check-tiles`` tiles per slide, per slide and overall, and explains the worst tiles
(:func:`diagnose_tile`): the tile's JPEG header (colour model, chroma subsampling),
which decoder the engine used, the pixel difference between the engine's decode and the
slide library's, the tile's brightness and contrast, and the cosine with only one
difference at a time (decoding, preprocessing, precision), which names the cause.
:func:`case_equivalence` scores the sample cases both ways with the DEMO head.

    python -m bench.equivalence --device cuda --precisions fp16,bf16 --json eq.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]


def _cosine(a: NDArray[Any], b: NDArray[Any]) -> NDArray[np.float64]:
    a, b = a.astype(np.float64), b.astype(np.float64)
    out = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.asarray(out, dtype=np.float64)


def diagnose_tile(
    slide: Any, plan: Any, index: int, backbone: Any, reference: Any, params: Any
) -> dict[str, Any]:
    """Why tile ``index`` of ``plan`` differs between the engine and the reference path.

    Returns the JPEG header facts, the decoder the engine uses for the tile, the pixel
    difference between the two decodes, the tile's pixel mean and standard deviation,
    and cosines against the reference embedding with one difference at a time:
    ``decode_only`` (engine pixels, reference preprocessing and backbone),
    ``preprocess_only`` (reference pixels, tensor preprocessing, reference backbone) and
    ``precision_only`` (reference pixels and preprocessing, engine backbone); ``cause``
    is the one farthest from 1.
    """
    import torch

    from ihgamp_core.embed import make_preprocessor
    from ihgamp_core.embed.decode import decode_jpeg_batch, gpu_decodable, read_jpeg_header
    from ihgamp_core.embed.extract import read_encoded_planned_tile, read_planned_tile
    from ihgamp_core.embed.tensor_preprocess import make_tensor_preprocessor

    device = backbone.device
    reference_px = read_planned_tile(slide, plan, index)
    stored = read_encoded_planned_tile(slide, plan, index)
    facts: dict[str, Any] = {"stored_jpeg": stored is not None}
    if stored is not None:
        header = read_jpeg_header(stored)
        gpu = device.startswith("cuda") and gpu_decodable(stored)
        facts |= {
            "colour_model": header.colour_model,
            "subsampling": header.subsampling,
            "decoder": "nvjpeg" if gpu else "libjpeg-turbo (torchvision)",
        }
        engine_px = decode_jpeg_batch([stored], device if gpu else "cpu")[0]
        engine_px = engine_px.cpu().permute(1, 2, 0).numpy()
    else:
        facts["decoder"] = "slide library (pixel path)"
        engine_px = reference_px
    diff = np.abs(engine_px.astype(np.int16) - reference_px.astype(np.int16))
    pillow = make_preprocessor(params)
    tensor = make_tensor_preprocessor(params)

    def tensor_input(pixels: NDArray[np.uint8]) -> Any:
        batch = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None]
        return tensor(batch.to(device)).cpu()

    engine = backbone.infer(tensor_input(engine_px))[0]
    ref = reference.infer(pillow([reference_px]))[0]
    decode_only = reference.infer(pillow([engine_px]))[0]
    preprocess_only = reference.infer(tensor_input(reference_px))[0]
    precision_only = backbone.infer(pillow([reference_px]))[0]
    parts = {
        "decode_only": float(_cosine(decode_only, ref)),
        "preprocess_only": float(_cosine(preprocess_only, ref)),
        "precision_only": float(_cosine(precision_only, ref)),
    }
    return facts | {
        "pixel_mean": round(float(reference_px.mean()), 1),
        "pixel_std": round(float(reference_px.std()), 1),
        "decode_abs_diff_mean": round(float(diff.mean()), 3),
        "decode_abs_diff_max": int(diff.max()),
        "cosine_recomputed": round(float(_cosine(engine, ref)), 6),
        **{k: round(v, 6) for k, v in parts.items()},
        "cause": min(parts, key=lambda k: parts[k]),
    }


def equivalence(
    slides: Sequence[Any],
    backbone: Any,
    max_tiles: int,
    check_tiles: int,
    batch: int,
    reference: Any = None,
    diagnose: int = 3,
) -> dict[str, Any]:
    """Engine embeddings against the reference path on the first tiles of each slide.

    The reference path runs ``reference`` (default: the same backbone), so that the int8
    or fp16 engine is compared with fp32 slide-library decoding and open_clip's
    transform. The ``diagnose`` worst tiles overall are explained by :func:`diagnose_tile`.
    """
    from ihgamp_core.embed import make_preprocessor
    from ihgamp_core.embed.extract import embed_plan
    from ihgamp_core.embed.pipeline import PipelineOptions, embed_slides
    from ihgamp_core.params import get_preset
    from ihgamp_core.slide import open_slide
    from ihgamp_core.tiling import plan_tiles

    preset = get_preset("paper").with_max_tiles(min(max_tiles, check_tiles))
    reference = reference or backbone
    worst: list[dict[str, Any]] = []
    per_slide, cosines = [], []
    for s in slides:
        with open_slide(s.path) as slide:
            planner = lambda sl: plan_tiles(sl, preset.tiling)  # noqa: E731
            fast = embed_slides(
                [slide], planner, backbone, preset.preprocess, PipelineOptions(batch)
            )
            emb = fast.embeddings[0]
            if emb is None or emb.features.shape[0] == 0:
                continue
            ref = embed_plan(
                slide, emb.plan, reference, make_preprocessor(preset.preprocess), batch
            )
            cos = _cosine(emb.features, ref.features)
            x0, y0 = emb.plan.level0_xy()
            for i in np.argsort(cos)[:diagnose]:
                worst.append(
                    {
                        "slide": s.name,
                        "tile": int(i),
                        "x0": int(x0[i]),
                        "y0": int(y0[i]),
                        "cosine": round(float(cos[i]), 6),
                        "compressed_path": fast.compressed_tiles > 0,
                        "gpu_decoded": fast.gpu_decoded_tiles > 0,
                        "_plan": emb.plan,
                        "_path": s.path,
                    }
                )
        cosines.append(cos)
        per_slide.append(
            {
                "slide": s.name,
                "tiles": int(cos.size),
                "mean_cosine": round(float(cos.mean()), 6),
                "min_cosine": round(float(cos.min()), 6),
                "gpu_decoded_tiles": fast.gpu_decoded_tiles,
                "compressed_tiles": fast.compressed_tiles,
            }
        )
    worst.sort(key=lambda w: w["cosine"])
    worst = worst[:diagnose]
    for w in worst:
        plan, path = w.pop("_plan"), w.pop("_path")
        with open_slide(path) as slide:
            w["why"] = diagnose_tile(slide, plan, w["tile"], backbone, reference, preset.preprocess)
    every = np.concatenate(cosines) if cosines else np.zeros(0)
    return {
        "precision": getattr(backbone, "precision", None),
        "reference_precision": getattr(reference, "precision", None),
        "tiles": int(every.size),
        "mean_cosine": round(float(every.mean()), 6) if every.size else None,
        "min_cosine": round(float(every.min()), 6) if every.size else None,
        "slides": per_slide,
        "worst_tiles": worst,
    }


def case_equivalence(backbone: Any, max_tiles: int, reference: Any = None) -> dict[str, Any]:
    """DEMO-001 and DEMO-002 scored by the engine's fast path and by the reference path.

    Uses the DEMO head with the benchmark's own backbone (the head was trained on this
    random-init backbone; another one is refused); the reference path runs ``reference``
    (default: the same backbone). The issue's bound is probabilities equal to 3
    decimals, i.e. within 0.0005, and the same call.
    """
    from gateway.analyses.engine import demo_head_path
    from ihgamp_core.head import load_head
    from ihgamp_core.hrd.engine import Engine, ScoringOptions
    from ihgamp_core.slide import open_slide
    from ihgamp_core.synthetic.samples import load_cases

    root = REPO / "sample_data" / "generated"
    cases = {c.case_id: c for c in load_cases(root)}
    head = load_head(demo_head_path())
    engine = Engine(backbone, head)
    reference_engine = Engine(reference, head) if reference is not None else engine
    rows = []
    for case_id in ("DEMO-001", "DEMO-002"):
        slides = [open_slide(root / rel) for rel in cases[case_id].dicom]
        try:
            fast = engine.score_case(
                slides, case_id, ScoringOptions(max_tiles=max_tiles, min_tiles=1)
            )
            ref = reference_engine.score_case(
                slides, case_id, ScoringOptions(max_tiles=max_tiles, min_tiles=1, path="reference")
            )
        finally:
            for slide in slides:
                slide.close()
        p_fast, p_ref = fast.probability or 0.0, ref.probability or 0.0
        rows.append(
            {
                "case": case_id,
                "tiles": fast.n_tiles,
                "probability_fast": round(p_fast, 6),
                "probability_reference": round(p_ref, 6),
                "abs_diff": round(abs(p_fast - p_ref), 6),
                "same_call": fast.call == ref.call,
            }
        )
    return {
        "cases": rows,
        "within_bound": all(r["abs_diff"] < 5e-4 and r["same_call"] for r in rows),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line; returns the report."""
    from bench.throughput import SLIDE_GROUPS, sample_slides
    from ihgamp_core.embed import OpenClipBackbone
    from ihgamp_core.hrd.engine import auto_batch_size

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precisions", default="auto", help="engine precisions, comma list")
    parser.add_argument("--check-tiles", type=int, default=64, help="tiles per slide")
    parser.add_argument("--case-tiles", type=int, default=64, help="tiles per case slide")
    parser.add_argument("--slides", default=",".join(SLIDE_GROUPS), help="slide groups")
    parser.add_argument("--large-tiles", type=int, default=20000, help="large slide size")
    parser.add_argument("--large-cell", type=int, default=2048, help="its mosaic cell (px)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ihgamp-bench")
    parser.add_argument("--diagnose", type=int, default=3, help="worst tiles explained")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args(argv)

    reference = OpenClipBackbone(device=args.device, precision="fp32")
    batch = auto_batch_size(reference.device)
    slides = sample_slides(
        args.slides.split(","), args.large_tiles, args.cache, cell=args.large_cell
    )
    report: dict[str, Any] = {"device": reference.device, "engines": []}
    for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
        engine = OpenClipBackbone(device=args.device, precision=precision)  # type: ignore[arg-type]
        if engine.precision == "fp32":
            engine = reference  # same arithmetic: one model
        row = equivalence(
            slides, engine, args.check_tiles, args.check_tiles, batch, reference, args.diagnose
        )
        row["cases"] = case_equivalence(engine, args.case_tiles, reference)
        print(json.dumps(row), flush=True)
        report["engines"].append(row)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
