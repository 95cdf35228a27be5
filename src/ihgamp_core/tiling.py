"""Planning which tiles of a slide are embedded.

For one slide this module

1. chooses the level tiles are read from (:func:`~ihgamp_core.slide.choose_level`);
2. reads a low-resolution image at 1/``mask_px_per_tile`` of a tile per pixel, in
   strips so memory stays bounded for any slide size, and computes the tissue mask;
3. lays the tile grid over the read level (origin at the top-left pixel, tiles fully
   inside the image, ``stride_px`` apart) and keeps tiles whose mask coverage is at
   least ``min_tissue_fraction``;
4. caps the number of tiles deterministically (:func:`select_capped`).

Tile coordinates are kept in read-level pixels, level-0 pixels and micrometres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .params import TilingParams
from .slide.base import Slide
from .slide.levels import LevelChoice, choose_level
from .slide.resample import read_resampled
from .tissue import tissue_mask

__all__ = [
    "TileGrid",
    "TilePlan",
    "plan_tiles",
    "read_mask_image",
    "select_capped",
    "tile_coverage_counts",
]

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True, eq=False)
class TileGrid:
    """Where a result's tiles lie on a slide; each analysis adds what it found per tile.

    Parameters
    ----------
    x, y : numpy.ndarray
        Upper-left corners in level-0 pixels.
    size : float
        Tile side in level-0 pixels.
    x_um, y_um : numpy.ndarray
        Upper-left corners in micrometres from the image origin.
    size_um : float
        Tile side in micrometres.
    """

    x: NDArray[np.int64]
    y: NDArray[np.int64]
    size: float
    x_um: NDArray[np.float64]
    y_um: NDArray[np.float64]
    size_um: float

    def __len__(self) -> int:
        return int(self.x.size)

    def positions_to_dict(self) -> dict[str, Any]:
        """The positions in a result document (sizes to 3 decimals, micrometres to 2)."""
        return {
            "size": round(self.size, 3),
            "size_um": round(self.size_um, 3),
            "x": self.x.tolist(),
            "y": self.y.tolist(),
            "x_um": np.round(self.x_um, 2).tolist(),
            "y_um": np.round(self.y_um, 2).tolist(),
        }

    @staticmethod
    def positions_from_dict(data: dict[str, Any]) -> dict[str, Any]:
        """:meth:`positions_to_dict`'s form back, as keyword arguments of a grid.

        Raises
        ------
        KeyError
            If a position field is missing.
        """
        return {
            "x": np.asarray(data["x"], dtype=np.int64),
            "y": np.asarray(data["y"], dtype=np.int64),
            "size": float(data["size"]),
            "x_um": np.asarray(data["x_um"], dtype=np.float64),
            "y_um": np.asarray(data["y_um"], dtype=np.float64),
            "size_um": float(data["size_um"]),
        }


@dataclass(frozen=True)
class TilePlan:
    """The tiles chosen on one slide.

    Parameters
    ----------
    choice : LevelChoice
        Level and footprint the tiles are read with.
    stride_read_px : int
        Distance between tile origins in read-level pixels.
    grid_shape : tuple of int
        ``(rows, cols)`` of candidate tile positions.
    mask : numpy.ndarray
        The tissue mask over the read level, ``mask_px_per_tile`` pixels per tile side.
    tissue_fraction : float
        Fraction of the mask that is tissue.
    n_candidates : int
        Tiles meeting the tissue threshold before the cap.
    cols, rows : numpy.ndarray
        Grid positions of the selected tiles (raster order).
    coverage : numpy.ndarray
        Tissue fraction of each selected tile.
    level0_scale : tuple of float
        Level-0 pixels per read-level pixel along x and y.
    base_mpp : float
        Level-0 pixel spacing (um/px).
    """

    choice: LevelChoice
    stride_read_px: int
    grid_shape: tuple[int, int]
    mask: NDArray[np.bool_]
    tissue_fraction: float
    n_candidates: int
    cols: NDArray[np.int64]
    rows: NDArray[np.int64]
    coverage: NDArray[np.float32]
    level0_scale: tuple[float, float]
    base_mpp: float

    @property
    def n_tiles(self) -> int:
        """Number of selected tiles."""
        return int(self.cols.size)

    def read_xy(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Upper-left corners of the selected tiles in read-level pixels."""
        return self.cols * self.stride_read_px, self.rows * self.stride_read_px

    def level0_xy(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Upper-left corners in level-0 pixels (rounded to the nearest pixel)."""
        x, y = self.read_xy()
        sx, sy = self.level0_scale
        return np.rint(x * sx).astype(np.int64), np.rint(y * sy).astype(np.int64)

    @property
    def tile_level0_px(self) -> float:
        """Tile side in level-0 pixels."""
        return self.choice.read_px * self.level0_scale[0]

    def um_xy(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Upper-left corners in micrometres from the image origin."""
        x, y = self.read_xy()
        sx, sy = self.level0_scale
        scale_x, scale_y = sx * self.base_mpp, sy * self.base_mpp
        return x.astype(np.float64) * scale_x, y.astype(np.float64) * scale_y


def read_mask_image(slide: Slide, choice: LevelChoice, px_per_tile: int) -> NDArray[np.uint8]:
    """Read the slide at ``px_per_tile`` pixels per tile side, over the whole read level.

    Parameters
    ----------
    slide : Slide
        The open slide.
    choice : LevelChoice
        The read level and footprint.
    px_per_tile : int
        Mask pixels per tile side.

    Returns
    -------
    numpy.ndarray
        ``(H_m, W_m, 3)`` uint8 with ``W_m = floor(read_level_width * px_per_tile / read_px)``.
    """
    return read_resampled(slide, choice.level, choice.read_px / px_per_tile)


def tile_coverage_counts(mask: NDArray[np.bool_], px_per_tile: int) -> NDArray[np.int64]:
    """Count tissue pixels in each full ``px_per_tile`` block of ``mask``.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` counts for the dense tile grid.
    """
    k = px_per_tile
    rows, cols = mask.shape[0] // k, mask.shape[1] // k
    blocks = mask[: rows * k, : cols * k].reshape(rows, k, cols, k)
    return np.asarray(blocks.sum(axis=(1, 3), dtype=np.int64), dtype=np.int64)


def _splitmix64(values: NDArray[np.uint64]) -> NDArray[np.uint64]:
    z = values + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def select_capped(
    cols: NDArray[np.int64], rows: NDArray[np.int64], max_tiles: int, order: str
) -> NDArray[np.int64]:
    """Return indices of at most ``max_tiles`` tiles, in raster order.

    Parameters
    ----------
    cols, rows : numpy.ndarray
        Grid positions of the candidate tiles, in raster order.
    max_tiles : int
        The cap.
    order : {"hash", "raster"}
        ``hash`` keeps the tiles with the smallest SplitMix64 hash of ``(row, col)``:
        a spatially uniform sample that depends only on the grid positions, so it is
        identical on every run and every machine, and adding tiles elsewhere on the
        slide never changes which of the existing tiles are chosen. ``raster`` keeps
        the first ``max_tiles`` in row-major order.
    """
    n = cols.size
    if n <= max_tiles:
        return np.arange(n, dtype=np.int64)
    if order == "raster":
        return np.arange(max_tiles, dtype=np.int64)
    keys = _splitmix64((rows.astype(np.uint64) << np.uint64(32)) | cols.astype(np.uint64))
    chosen = np.argsort(keys, kind="stable")[:max_tiles]
    return np.sort(chosen).astype(np.int64)


def plan_tiles(slide: Slide, params: TilingParams) -> TilePlan:
    """Choose the tiles to embed on ``slide`` (see the module docstring).

    Raises
    ------
    NoUsableLevelError
        If the slide has no level at or finer than the target spacing.
    SlideReadError
        If the low-resolution image cannot be read.
    """
    mpps = [lvl.mpp for lvl in slide.levels]
    choice = choose_level(mpps, params.tile_px, params.target_mpp, params.mpp_tolerance)
    k = params.tissue.mask_px_per_tile
    image = read_mask_image(slide, choice, k)
    mask = tissue_mask(image, params.tissue)

    counts = tile_coverage_counts(mask, k)
    m = params.stride_tiles
    counts = counts[::m, ::m]
    needed = math.ceil(params.min_tissue_fraction * k * k - 1e-9)
    rows, cols = np.nonzero(counts >= needed)  # raster order
    keep = select_capped(cols, rows, params.max_tiles, params.cap_order)
    rows, cols = rows[keep], cols[keep]

    read_level = slide.levels[choice.level]
    base = slide.levels[0]
    return TilePlan(
        choice=choice,
        stride_read_px=choice.read_px * m,
        grid_shape=(int(counts.shape[0]), int(counts.shape[1])),
        mask=mask,
        tissue_fraction=float(mask.mean()) if mask.size else 0.0,
        n_candidates=int(np.count_nonzero(counts >= needed)),
        cols=cols.astype(np.int64),
        rows=rows.astype(np.int64),
        coverage=(counts[rows, cols] / float(k * k)).astype(np.float32),
        level0_scale=(base.width / read_level.width, base.height / read_level.height),
        base_mpp=slide.base_mpp,
    )
