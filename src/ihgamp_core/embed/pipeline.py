"""The overlapped embedding pipeline: plan, read, decode and infer at the same time.

Stages, each running while the others work::

    planner thread    tissue detection + tile plan of slide k+1
    reader threads    compressed tile bytes of upcoming batches (or decoded pixels)
    main thread       [GPU: nvJPEG batch decode] -> tensor preprocessing -> backbone

Batches come from a bounded window (``prefetch`` batches in flight) that runs across
slide boundaries, so the backbone does not wait between the slides of a case.

Compressed path: when a level stores tiles exactly the planned tiles' geometry (256 px
frames at the chosen level, typical of DICOM WSI and SVS at 20x) and they are JPEG, the
readers fetch the stored bytes without decoding. On CUDA the batch is decoded on the
GPU when every tile is a YCbCr JPEG that nvJPEG reads as libjpeg-turbo does
(:func:`.decode.gpu_decodable`), otherwise on the reader thread; on the CPU the reader
thread decodes it with libjpeg-turbo (the GIL is released).
Other slides take the pixel path (read + area downsample on the reader threads, pinned
memory for the upload). Either way preprocessing runs as tensor operations on the
compute device (:mod:`.tensor_preprocess`).

Every run records where its time went (:class:`StageTimes`): planning, reading and CPU
decoding (summed over their threads), the main thread's wait for the readers, GPU
decoding, preprocessing and the backbone. On CUDA, work is queued asynchronously and the
backbone's copy of its output to the host waits for it, so without
``PipelineOptions(profile=True)`` queued decoding and preprocessing show up in
``backbone_s``; with it the main thread synchronises after each GPU stage (slower, for a
profile only).

The reference path (:func:`.extract.embed_plan`: decode by the slide library, Pillow
preprocessing exactly as open_clip) stays available; the tests bound the difference.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from ..errors import ParameterError
from ..params import PreprocessParams
from ..slide.base import Slide
from ..tiling import TilePlan
from .backbone import Backbone
from .decode import TileDecodeError, decode_jpeg_batch, gpu_decodable, is_jpeg
from .extract import SlideEmbeddings, read_encoded_planned_tile, read_planned_tile
from .tensor_preprocess import make_tensor_preprocessor

__all__ = ["PipelineOptions", "PipelineRun", "SlideProgress", "StageTimes", "embed_slides"]

logger = logging.getLogger(__name__)

TileMode = Literal["auto", "pixels"]
Planner = Callable[[Slide], TilePlan | None]


class SlideProgress(Protocol):
    """Receives pipeline events (:class:`ihgamp_core.hrd.engine.ScoringProgress` fits)."""

    def slide_started(self, label: str, n_tiles: int) -> None:
        """A slide's first batch reaches the backbone."""

    def tiles_done(self, count: int) -> None:
        """``count`` more tiles are embedded."""


class _Silent:
    def slide_started(self, label: str, n_tiles: int) -> None:
        pass

    def tiles_done(self, count: int) -> None:
        pass


@dataclass(frozen=True)
class PipelineOptions:
    """How the pipeline runs (none of this changes the model).

    Parameters
    ----------
    batch_size : int
        Tiles per forward pass (GPU: 256 or more; CPU: about 8).
    readers : int
        Reader threads (tile I/O and CPU decoding).
    prefetch : int
        Batches read ahead of the backbone, across slides.
    tiles : {"auto", "pixels"}
        ``auto`` uses stored JPEG tiles where the geometry allows; ``pixels`` always
        reads decoded pixels through the slide library.
    profile : bool
        Synchronise the GPU after decoding and after preprocessing so that
        :class:`StageTimes` attributes GPU time to its stage (costs throughput; no
        effect on the CPU).
    """

    batch_size: int = 32
    readers: int = 2
    prefetch: int = 4
    tiles: TileMode = "auto"
    profile: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.readers < 1 or self.prefetch < 1:
            raise ParameterError("batch_size, readers and prefetch must be at least 1")
        if self.tiles not in ("auto", "pixels"):
            raise ParameterError("tiles must be 'auto' or 'pixels'")


@dataclass
class StageTimes:
    """Seconds spent per pipeline stage in one :func:`embed_slides` run.

    Attributes
    ----------
    planning_s : float
        Tissue detection and tile planning (planner thread; overlaps the rest).
    read_s : float
        Fetching stored tile bytes or reading pixels through the slide library
        (reader threads, summed over threads).
    cpu_decode_s : float
        libjpeg-turbo decoding of stored tiles on the reader threads (summed).
    wait_s : float
        Main thread waiting for the readers or for the next slide's plan (the backbone
        starved of input).
    gpu_decode_s : float
        nvJPEG batch decoding (main thread).
    preprocess_s : float
        Host-to-device copy and tensor preprocessing (main thread).
    backbone_s : float
        The backbone's forward pass and the copy of its output to the host.
    """

    planning_s: float = 0.0
    read_s: float = 0.0
    cpu_decode_s: float = 0.0
    wait_s: float = 0.0
    gpu_decode_s: float = 0.0
    preprocess_s: float = 0.0
    backbone_s: float = 0.0

    def to_dict(self) -> dict[str, float]:
        """Return the JSON form, rounded to milliseconds."""
        return {name: round(float(value), 3) for name, value in vars(self).items()}


@dataclass
class PipelineRun:
    """What :func:`embed_slides` produced, per slide in input order.

    Attributes
    ----------
    plans : list of TilePlan or None
        None where the planner found no usable level.
    embeddings : list of SlideEmbeddings or None
    compressed_tiles, pixel_tiles : int
        Tiles that took the compressed (stored JPEG) and the pixel path.
    gpu_decoded_tiles : int
        Compressed tiles decoded by nvJPEG (the others on the CPU; see
        :func:`.decode.gpu_decodable`).
    planning_s, wall_s : float
        Planner time (summed; it overlaps embedding) and wall time of the whole run.
    stages : StageTimes
        Where the time went, stage by stage.
    """

    plans: list[TilePlan | None] = field(default_factory=list)
    embeddings: list[SlideEmbeddings | None] = field(default_factory=list)
    compressed_tiles: int = 0
    pixel_tiles: int = 0
    gpu_decoded_tiles: int = 0
    planning_s: float = 0.0
    wall_s: float = 0.0
    stages: StageTimes = field(default_factory=StageTimes)


@dataclass(frozen=True)
class _Chunk:
    slide: int
    start: int
    stop: int
    jpeg: list[bytes] | None = None  # GPU decode pending
    pixels: Any = None  # uint8 (N, 3, H, W) tensor
    compressed: bool = False
    read_s: float = 0.0
    decode_s: float = 0.0


def _read_chunk(
    slide: Slide, plan: TilePlan, index: int, start: int, stop: int, mode: TileMode, gpu: bool
) -> _Chunk:
    import torch

    pixels, compressed, decode_s = None, False, 0.0
    t0 = time.perf_counter()
    if mode == "auto":
        data = [read_encoded_planned_tile(slide, plan, i) for i in range(start, stop)]
        if all(d is not None and is_jpeg(d) for d in data):
            encoded = [d for d in data if d is not None]
            if gpu and all(gpu_decodable(d) for d in encoded):
                read_s = time.perf_counter() - t0
                return _Chunk(index, start, stop, jpeg=encoded, compressed=True, read_s=read_s)
            t1 = time.perf_counter()
            try:
                pixels, compressed = decode_jpeg_batch(encoded, "cpu"), True
            except TileDecodeError as exc:
                logger.warning(
                    "stored tiles not decodable; reading pixels", extra={"why": str(exc)}
                )
            decode_s = time.perf_counter() - t1
    if pixels is None:
        tiles = np.stack([read_planned_tile(slide, plan, i) for i in range(start, stop)])
        pixels = torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()
    if gpu:
        pixels = pixels.pin_memory()  # CPU-decoded or read pixels: fast upload
    read_s = time.perf_counter() - t0 - decode_s
    return _Chunk(
        index, start, stop, pixels=pixels, compressed=compressed, read_s=read_s, decode_s=decode_s
    )


def _sync(device: str, enabled: bool) -> None:
    """Wait for the GPU's queued work when profiling (no-op on the CPU)."""
    if enabled:
        import torch

        torch.cuda.synchronize(device)


def embed_slides(
    slides: Sequence[Slide],
    planner: Planner,
    backbone: Backbone,
    params: PreprocessParams,
    options: PipelineOptions | None = None,
    progress: SlideProgress | None = None,
) -> PipelineRun:
    """Plan and embed ``slides`` with every stage overlapped.

    Parameters
    ----------
    slides : sequence of Slide
        Open slides (one case, or any batch of slides).
    planner : callable
        ``slide -> TilePlan`` (None: the slide is skipped); runs on a planner thread.
    backbone : Backbone
        The encoder; its ``device`` attribute (default ``cpu``) decides where decoding
        and preprocessing run.
    params : PreprocessParams
        The preset's preprocessing.
    options : PipelineOptions, optional
    progress : SlideProgress, optional

    Returns
    -------
    PipelineRun

    Raises
    ------
    SlideReadError
        If a slide cannot be planned or read.
    """
    options = options or PipelineOptions()
    sink: SlideProgress = progress or _Silent()
    device = str(getattr(backbone, "device", "cpu"))
    gpu = device.startswith("cuda")
    profile = gpu and options.profile
    preprocess = make_tensor_preprocessor(params)
    dim = backbone.identity.embedding_dim
    run = PipelineRun(plans=[None] * len(slides), embeddings=[None] * len(slides))
    started = time.perf_counter()

    def plan_one(slide: Slide) -> tuple[TilePlan | None, float]:
        t0 = time.perf_counter()
        plan = planner(slide)
        return plan, time.perf_counter() - t0

    features: dict[int, np.ndarray] = {}
    announced: set[int] = set()
    with (
        ThreadPoolExecutor(1, thread_name_prefix="plan") as planning,
        ThreadPoolExecutor(options.readers, thread_name_prefix="tiles") as readers,
    ):
        planned = [planning.submit(plan_one, s) for s in slides]

        def chunks() -> Iterator[Future[_Chunk]]:
            for k, slide in enumerate(slides):
                plan, seconds = planned[k].result()
                run.planning_s += seconds
                run.plans[k] = plan
                if plan is None:
                    continue
                features[k] = np.empty((plan.n_tiles, dim), dtype=np.float32)
                if plan.n_tiles == 0:
                    sink.slide_started(slide.info.source, 0)
                    announced.add(k)
                for start in range(0, plan.n_tiles, options.batch_size):
                    stop = min(plan.n_tiles, start + options.batch_size)
                    yield readers.submit(
                        _read_chunk, slide, plan, k, start, stop, options.tiles, gpu
                    )

        source = chunks()
        window: deque[Future[_Chunk]] = deque()
        for future in source:
            window.append(future)
            if len(window) >= options.prefetch:
                break
        stages = run.stages
        while window:
            t0 = time.perf_counter()
            chunk = window.popleft().result()
            stages.wait_s += time.perf_counter() - t0
            stages.read_s += chunk.read_s
            stages.cpu_decode_s += chunk.decode_s
            t0 = time.perf_counter()
            nxt = next(source, None)  # may wait for the next slide's plan
            stages.wait_s += time.perf_counter() - t0
            if nxt is not None:
                window.append(nxt)
            if chunk.slide not in announced:
                announced.add(chunk.slide)
                plan = run.plans[chunk.slide]
                sink.slide_started(slides[chunk.slide].info.source, plan.n_tiles if plan else 0)
            if chunk.jpeg is not None:
                t0 = time.perf_counter()
                try:
                    pixels = decode_jpeg_batch(chunk.jpeg, device)
                    _sync(device, profile)
                    run.gpu_decoded_tiles += len(chunk.jpeg)
                    stages.gpu_decode_s += time.perf_counter() - t0
                except TileDecodeError as exc:
                    logger.warning("GPU decode failed; reading pixels", extra={"why": str(exc)})
                    k = chunk.slide
                    plan = run.plans[k]
                    assert plan is not None  # noqa: S101
                    chunk = _read_chunk(slides[k], plan, k, chunk.start, chunk.stop, "pixels", gpu)
                    stages.read_s += chunk.read_s
                    pixels = chunk.pixels
            else:
                pixels = chunk.pixels
            t0 = time.perf_counter()
            batch = preprocess(pixels.to(device, non_blocking=True))
            _sync(device, profile)
            t1 = time.perf_counter()
            out = backbone.infer(batch)
            stages.preprocess_s += t1 - t0
            stages.backbone_s += time.perf_counter() - t1
            features[chunk.slide][chunk.start : chunk.stop] = out
            n = chunk.stop - chunk.start
            if chunk.compressed:
                run.compressed_tiles += n
            else:
                run.pixel_tiles += n
            sink.tiles_done(n)
    for k, plan in enumerate(run.plans):
        if plan is not None:
            run.embeddings[k] = SlideEmbeddings(plan, features[k], backbone.identity)
    run.stages.planning_s = run.planning_s
    run.wall_s = time.perf_counter() - started
    return run
