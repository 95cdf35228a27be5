"""Scoring one case: slides -> tiles -> embeddings -> mean -> head -> :class:`CaseResult`.

The case (patient) representation is the mean of all tile embeddings over all the
case's slides, as in the paper. Because the head is linear up to the Platt sigmoid,
the same map scores each tile, which is the heatmap.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

import numpy as np

from .. import __version__
from ..embed.backbone import Backbone
from ..embed.extract import SlideEmbeddings, embed_plan
from ..embed.pipeline import PipelineOptions, embed_slides
from ..embed.preprocess import Preprocessor, make_preprocessor
from ..errors import NoUsableLevelError, ParameterError
from ..head.artifact import HeadArtifact
from ..params import Preset
from ..slide.base import Slide
from ..tiling import TilePlan, plan_tiles
from .result import (
    Call,
    CaseResult,
    ModelIdentity,
    QCFlag,
    Runtime,
    SlideResult,
    TileScores,
    Timings,
)

__all__ = ["Engine", "ScoringOptions", "ScoringProgress", "auto_batch_size", "embed_slide"]

logger = logging.getLogger(__name__)


class ScoringProgress(Protocol):
    """Receives progress events (the CLI draws bars from them)."""

    def slide_started(self, label: str, n_tiles: int) -> None:
        """Report that a slide's tiles are planned and embedding starts."""

    def tiles_done(self, count: int) -> None:
        """Report that ``count`` more tiles are embedded."""


@dataclass(frozen=True)
class ScoringOptions:
    """Run-time options that do not change the model.

    Parameters
    ----------
    max_tiles : int or None
        Per-slide tile cap instead of the head's (recorded in the result).
    min_tiles : int
        Fewer tiles than this over the case raise the ``too-few-tiles`` QC flag.
    batch_size : int
        Tiles per forward pass; 0 (the default) picks 256 on a GPU and 8 on the CPU.
    workers : int
        Tile-reading threads.
    path : {"fast", "reference"}
        ``fast``: the overlapped pipeline (stored JPEG tiles decoded in batches, on the
        GPU when there is one; tensor preprocessing); ``reference``: tiles decoded by the
        slide library and preprocessed by open_clip's own transform, one slide at a time.
        Both give the same calls (see docs/benchmarks.md for the measured difference).
    prefetch : int
        Batches read ahead of the backbone (fast path).
    """

    max_tiles: int | None = None
    min_tiles: int = 16
    batch_size: int = 0
    workers: int = 2
    path: Literal["fast", "reference"] = "fast"
    prefetch: int = 4

    def __post_init__(self) -> None:
        if self.max_tiles is not None and self.max_tiles < 1:
            raise ParameterError("--max-tiles must be at least 1")
        if self.min_tiles < 1 or self.workers < 1 or self.prefetch < 1:
            raise ParameterError("min_tiles, workers and prefetch must be at least 1")
        if self.batch_size < 0:
            raise ParameterError("batch_size must be at least 1 (or 0 for automatic)")
        if self.path not in ("fast", "reference"):
            raise ParameterError("path must be 'fast' or 'reference'")

    def batch_for(self, device: str) -> int:
        """The batch size to use on ``device`` (resolves 0 = automatic)."""
        return self.batch_size or auto_batch_size(device)


def auto_batch_size(device: str) -> int:
    """Tiles per forward pass when none is given: 256 on a GPU, 8 on the CPU.

    8 is the fastest measured batch for ViT-B/16 on a 2-core CPU (docs/benchmarks.md).
    """
    return 256 if str(device).startswith("cuda") else 8


def embed_slide(
    slide: Slide,
    backbone: Backbone,
    preset: Preset,
    batch_size: int = 32,
    workers: int = 2,
    progress: ScoringProgress | None = None,
    path: Literal["fast", "reference"] = "fast",
) -> SlideEmbeddings:
    """Plan and embed the tiles of one slide with ``preset``'s tiling and preprocessing.

    ``path`` chooses the overlapped pipeline (``fast``) or slide-library decoding with
    open_clip's own transform (``reference``); see :class:`ScoringOptions`.

    Raises
    ------
    NoUsableLevelError
        If the slide has no level fine enough.
    SlideReadError
        If pixels cannot be read.
    """
    if path == "fast":
        run = embed_slides(
            [slide],
            lambda s: plan_tiles(s, preset.tiling),
            backbone,
            preset.preprocess,
            PipelineOptions(batch_size, workers),
            progress,
        )
        (embeddings,) = run.embeddings
        assert embeddings is not None  # noqa: S101  (the planner raises instead of None)
        return embeddings
    plan = plan_tiles(slide, preset.tiling)
    return _embed_planned(
        slide, plan, backbone, make_preprocessor(preset.preprocess), batch_size, workers, progress
    )


def _embed_planned(
    slide: Slide,
    plan: TilePlan,
    backbone: Backbone,
    preprocess: Preprocessor,
    batch_size: int,
    workers: int,
    progress: ScoringProgress | None,
) -> SlideEmbeddings:
    if progress is not None:
        progress.slide_started(slide.info.source, plan.n_tiles)
    return embed_plan(
        slide,
        plan,
        backbone,
        preprocess,
        batch_size=batch_size,
        workers=workers,
        progress=progress.tiles_done if progress is not None else None,
    )


class Engine:
    """A backbone and a head, checked to belong together, ready to score cases.

    Parameters
    ----------
    backbone : Backbone
        The tile encoder.
    head : HeadArtifact
        The HRD head; its preset decides tiling and preprocessing.

    Raises
    ------
    BackboneMismatchError
        If the head was trained on another backbone.
    """

    def __init__(self, backbone: Backbone, head: HeadArtifact) -> None:
        head.check_backbone(backbone.identity)
        self.backbone = backbone
        self.head = head
        meta = head.metadata
        self.model = ModelIdentity(
            head_name=meta.name,
            head_version=meta.version,
            endpoint=meta.endpoint,
            backbone=meta.backbone,
            preset=meta.preset.name,
            demo=meta.demo,
            intended_use=meta.intended_use,
            display_name=meta.display_name,
        )

    def preset(self, options: ScoringOptions) -> Preset:
        """Return the head's preset with run-time overrides applied."""
        preset = self.head.metadata.preset
        if options.max_tiles is not None:
            preset = preset.with_max_tiles(options.max_tiles)
        return preset

    def score_case(
        self,
        slides: Sequence[Slide],
        case_id: str,
        options: ScoringOptions | None = None,
        progress: ScoringProgress | None = None,
    ) -> CaseResult:
        """Score one case made of ``slides``.

        Parameters
        ----------
        slides : sequence of Slide
            The case's open slides.
        case_id : str
            Identifier written into the result (not a patient identifier).
        options : ScoringOptions, optional
            Run-time options.
        progress : ScoringProgress, optional
            Progress receiver.

        Returns
        -------
        CaseResult

        Raises
        ------
        SlideReadError
            If a slide's pixels cannot be read.
        """
        options = options or ScoringOptions()
        if not slides:
            raise ParameterError("a case needs at least one slide")
        preset = self.preset(options)
        started = time.perf_counter()
        tiling_s = embedding_s = 0.0
        device = str(getattr(self.backbone, "device", "cpu"))
        batch_size = options.batch_for(device)

        slide_results: list[SlideResult] = []
        embedded: list[SlideEmbeddings | None] = []

        def planner(slide: Slide) -> TilePlan | None:
            try:
                return plan_tiles(slide, preset.tiling)
            except NoUsableLevelError as exc:
                logger.warning(
                    "slide has no usable level", extra={"slide": slide.info.source, "why": str(exc)}
                )
                return None

        if options.path == "fast":
            run = embed_slides(
                slides,
                planner,
                self.backbone,
                preset.preprocess,
                PipelineOptions(batch_size, options.workers, options.prefetch),
                progress,
            )
            embedded = run.embeddings
            tiling_s, embedding_s = run.planning_s, run.wall_s - run.planning_s
        preprocess = make_preprocessor(preset.preprocess)
        for slide in slides if options.path == "reference" else ():
            t0 = time.perf_counter()
            plan = planner(slide)
            t1 = time.perf_counter()
            tiling_s += t1 - t0
            if plan is None:
                embedded.append(None)
                continue
            embedded.append(
                _embed_planned(
                    slide,
                    plan,
                    self.backbone,
                    preprocess,
                    batch_size,
                    options.workers,
                    progress,
                )
            )
            embedding_s += time.perf_counter() - t1

        t_head = time.perf_counter()
        for slide, emb in zip(slides, embedded, strict=True):
            slide_results.append(self._slide_result(slide, emb))
        features = [e.features for e in embedded if e is not None and e.features.shape[0]]
        n_tiles = int(sum(f.shape[0] for f in features))

        flags: list[QCFlag] = []
        if any(QCFlag.NO_USABLE_LEVEL in s.qc_flags for s in slide_results):
            flags.append(QCFlag.NO_USABLE_LEVEL)
        if n_tiles < options.min_tiles:
            flags.append(QCFlag.TOO_FEW_TILES)

        score = probability = norm = None
        if n_tiles:
            case_embedding = np.concatenate(features).mean(axis=0, dtype=np.float64)
            norm = float(np.linalg.norm(case_embedding))
            score = float(self.head.score(case_embedding[None, :])[0])
            probability = float(self.head.probability(score))
            lo, hi = self.head.metadata.embedding_norm_range
            if not lo <= norm <= hi:
                flags.append(QCFlag.EMBEDDING_NORM_OUT_OF_RANGE)

        threshold = self.head.metadata.operating_threshold
        if flags or probability is None:
            call = Call.NO_CALL
        elif probability >= threshold:
            call = Call.HRD_LIKELY
        else:
            call = Call.HRD_UNLIKELY
        head_s = time.perf_counter() - t_head

        tiling = asdict(preset.tiling)
        tiling["preset"] = preset.name
        tiling["max_tiles_trained"] = self.head.metadata.preset.tiling.max_tiles
        return CaseResult(
            case_id=case_id,
            slides=tuple(slide_results),
            n_tiles=n_tiles,
            score=score,
            probability=probability,
            threshold=threshold,
            call=call,
            qc_flags=tuple(flags),
            model=self.model,
            tiling=tiling,
            case_embedding_norm=norm,
            timings=Timings(
                tiling_s=tiling_s,
                embedding_s=embedding_s,
                head_s=head_s,
                total_s=time.perf_counter() - started,
            ),
            engine_version=__version__,
            created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            runtime=Runtime(
                device=device,
                precision=str(getattr(self.backbone, "precision", "fp32")),
                pipeline=options.path,
                batch_size=batch_size,
            ),
        )

    def _slide_result(self, slide: Slide, emb: SlideEmbeddings | None) -> SlideResult:
        base = slide.levels[0]
        if emb is None:
            return SlideResult(
                info=slide.info,
                width=base.width,
                height=base.height,
                base_mpp=slide.base_mpp,
                read_level=None,
                read_level_mpp=None,
                tile_mpp=None,
                resampled=False,
                grid_tiles=0,
                tissue_tiles=0,
                tiles_used=0,
                tissue_fraction=0.0,
                mean_embedding_norm=None,
                qc_flags=(QCFlag.NO_USABLE_LEVEL,),
            )
        plan = emb.plan
        x0, y0 = plan.level0_xy()
        x_um, y_um = plan.um_xy()
        tiles = TileScores(
            x=x0,
            y=y0,
            size=plan.tile_level0_px,
            x_um=x_um,
            y_um=y_um,
            size_um=plan.tile_level0_px * plan.base_mpp,
            coverage=plan.coverage,
            score=self.head.score(emb.features),
        )
        return SlideResult(
            info=slide.info,
            width=base.width,
            height=base.height,
            base_mpp=slide.base_mpp,
            read_level=plan.choice.level,
            read_level_mpp=plan.choice.level_mpp,
            tile_mpp=plan.choice.effective_mpp,
            resampled=plan.choice.resampled,
            grid_tiles=plan.grid_shape[0] * plan.grid_shape[1],
            tissue_tiles=plan.n_candidates,
            tiles_used=plan.n_tiles,
            tissue_fraction=plan.tissue_fraction,
            mean_embedding_norm=emb.mean_norm if plan.n_tiles else None,
            tiles=tiles,
        )
