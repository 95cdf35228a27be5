"""Reading planned tiles and embedding them in batches.

Reading and preprocessing of the next batches run on worker threads while the
backbone embeds the current one (slide decoders release the GIL), so the CPU or GPU
is not idle between batches.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..slide.base import Slide
from ..tiling import TilePlan
from .backbone import Backbone, BackboneIdentity
from .preprocess import Preprocessor

__all__ = [
    "SlideEmbeddings",
    "decode_tile",
    "embed_plan",
    "read_encoded_planned_tile",
    "read_planned_tile",
]

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class SlideEmbeddings:
    """The embeddings of one slide's planned tiles.

    Parameters
    ----------
    plan : TilePlan
        The tiles, in the order of ``features``.
    features : numpy.ndarray
        ``(n_tiles, D)`` float32.
    backbone : BackboneIdentity
        What produced them.
    """

    plan: TilePlan
    features: NDArray[np.float32]
    backbone: BackboneIdentity

    def __post_init__(self) -> None:
        if self.features.ndim != 2 or self.features.shape[0] != self.plan.n_tiles:
            raise ValueError(
                f"features {self.features.shape} do not match {self.plan.n_tiles} planned tiles"
            )
        if self.features.shape[1] != self.backbone.embedding_dim:
            raise ValueError("feature width differs from the backbone's embedding_dim")

    @property
    def mean_norm(self) -> float:
        """L2 norm of the mean tile embedding (nan without tiles)."""
        if self.features.shape[0] == 0:
            return float("nan")
        return float(np.linalg.norm(self.features.mean(axis=0, dtype=np.float64)))


def read_planned_tile(slide: Slide, plan: TilePlan, index: int) -> NDArray[np.uint8]:
    """Read tile ``index`` of ``plan`` as an ``(out_px, out_px, 3)`` RGB array.

    Tiles read at a finer level are downsampled with an area (box) filter.
    """
    choice = plan.choice
    x = int(plan.cols[index]) * plan.stride_read_px
    y = int(plan.rows[index]) * plan.stride_read_px
    pixels = slide.read_region(choice.level, x, y, choice.read_px, choice.read_px)
    if choice.resampled:
        image = Image.fromarray(pixels).resize(
            (choice.out_px, choice.out_px), resample=Image.Resampling.BOX
        )
        pixels = np.asarray(image)
    return pixels


def read_encoded_planned_tile(slide: Slide, plan: TilePlan, index: int) -> bytes | None:
    """Return the stored compressed bytes of tile ``index`` when they are exactly the tile.

    That is the case when tiles are read without resampling, the level stores tiles of
    the same size, and the tile grid falls on the stored grid. Otherwise ``None``.
    """
    choice = plan.choice
    level = slide.levels[choice.level]
    if (
        choice.resampled
        or level.tile_width != choice.read_px
        or level.tile_height != choice.read_px
        or plan.stride_read_px % choice.read_px != 0
    ):
        return None
    step = plan.stride_read_px // choice.read_px
    return slide.read_encoded_tile(
        choice.level, int(plan.cols[index]) * step, int(plan.rows[index]) * step
    )


def decode_tile(data: bytes) -> NDArray[np.uint8]:
    """Decode a standalone compressed tile to RGB on the CPU (libjpeg-turbo via Pillow)."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def embed_plan(
    slide: Slide,
    plan: TilePlan,
    backbone: Backbone,
    preprocess: Preprocessor,
    batch_size: int = 32,
    workers: int = 2,
    progress: ProgressCallback | None = None,
) -> SlideEmbeddings:
    """Embed every tile of ``plan``.

    Parameters
    ----------
    slide : Slide
        The open slide.
    plan : TilePlan
        Tiles to embed.
    backbone : Backbone
        The encoder.
    preprocess : callable
        From :func:`~ihgamp_core.embed.preprocess.make_preprocessor`.
    batch_size : int
        Tiles per forward pass.
    workers : int
        Threads reading and preprocessing upcoming batches.
    progress : callable, optional
        Called with the number of tiles finished after each batch.

    Returns
    -------
    SlideEmbeddings
    """
    n = plan.n_tiles
    dim = backbone.identity.embedding_dim
    features = np.empty((n, dim), dtype=np.float32)
    if n == 0:
        return SlideEmbeddings(plan, features, backbone.identity)
    batch_size = max(1, batch_size)
    starts = list(range(0, n, batch_size))

    def prepare(start: int) -> Any:
        stop = min(n, start + batch_size)
        return preprocess([read_planned_tile(slide, plan, i) for i in range(start, stop)])

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tiles") as pool:
        pending: deque[tuple[int, Future[Any]]] = deque()
        next_batch = 0
        while next_batch < len(starts) and len(pending) < workers + 1:
            pending.append((starts[next_batch], pool.submit(prepare, starts[next_batch])))
            next_batch += 1
        while pending:
            start, future = pending.popleft()
            batch = future.result()
            if next_batch < len(starts):
                pending.append((starts[next_batch], pool.submit(prepare, starts[next_batch])))
                next_batch += 1
            out = backbone.infer(batch)
            features[start : start + out.shape[0]] = out
            if progress is not None:
                progress(out.shape[0])
    return SlideEmbeddings(plan, features, backbone.identity)
