"""``ihgamp score``: score one case made of one or more slides."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from ihgamp_core.result import result_to_json
from ihgamp_core.scoring import ScoringOptions
from ihgamp_core.slide import discover_slides

from ..models import load_engine
from .common import (
    console,
    handle_errors,
    model_lines,
    results_table,
    scoring_progress,
    setup_logging,
)

__all__ = ["score"]


@handle_errors
def score(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Slides of ONE case: DICOM WSI folders or instances, SVS/NDPI/MRXS/TIFF "
            "files, or folders holding them.",
            show_default=False,
        ),
    ],
    case_id: Annotated[
        str | None,
        typer.Option(help="Case identifier for the result (default: first slide's name)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the result as JSON to this file.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    max_tiles: Annotated[
        int | None,
        typer.Option(help="Per-slide tile cap (default: the head's, 2000 for the paper preset)."),
    ] = None,
    min_tiles: Annotated[
        int, typer.Option(help="Fewer tissue tiles than this over the case -> QC flag, no call.")
    ] = 16,
    backbone_checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="OpenCLIP ViT-B/16 checkpoint (.safetensors/.bin). Default: the DEMO "
            "model's seeded random initialisation."
        ),
    ] = None,
    head: Annotated[
        Path | None,
        typer.Option(help="Head artifact folder (head.json + head.npz). Default: the DEMO head."),
    ] = None,
    mpp: Annotated[
        float | None,
        typer.Option(help="Level-0 pixel spacing in um/px, for slides that do not store it."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Tiles per forward pass (0: 256 on a GPU, 8 on the CPU).")
    ] = 0,
    precision: Annotated[
        str,
        typer.Option(
            help="auto (fp16 on a GPU, fp32 on the CPU), fp32, fp16, bf16, or int8 (CPU only)."
        ),
    ] = "auto",
    pipeline: Annotated[
        str,
        typer.Option(
            help="fast (batched JPEG decode, overlapped) or reference (open_clip's transform)."
        ),
    ] = "fast",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Score one case: tiles at 0.5 um/px -> OpenCLIP ViT-B/16 -> mean -> PCA-Ridge-Platt head.

    Prints the case table and, with --out, writes the full result (per-slide counts,
    per-tile coordinates and scores, model identity, timings) as JSON. Exit code 2
    with a one-line message on bad input.
    """
    setup_logging(verbose)
    if pipeline not in ("fast", "reference"):
        raise typer.BadParameter("--pipeline must be fast or reference")
    options = ScoringOptions(
        max_tiles=max_tiles,
        min_tiles=min_tiles,
        batch_size=batch_size,
        path=pipeline,  # type: ignore[arg-type]
    )
    sources = discover_slides(paths)
    engine = load_engine(head, backbone_checkpoint, device, precision)  # type: ignore[arg-type]
    with ExitStack() as stack:
        slides = [stack.enter_context(source.open(mpp)) for source in sources]
        with scoring_progress(progress) as bar:
            result = engine.score_case(
                slides, case_id or Path(sources[0].label).name, options, progress=bar
            )
    console.print(results_table([result]))
    console.print(model_lines(result))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result_to_json(result))
        console.print(f"result written to {out}")
