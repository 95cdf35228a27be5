"""HRD's tile-level heatmaps: a DICOM Parametric Map registered to the slide, and a PNG overlay.

Because the head is linear up to the Platt sigmoid, every embedded tile has a score.
The heatmap shows the *tile-level HRD probability*: the case's Platt calibration applied
to each tile's score (indicative only; the case estimate is the mean-pooled one).

Parametric Map (highdicom): one pixel per tile grid cell, float32, in the slide's frame
of reference. Pixel spacing = tile side in mm; the first pixel's centre is the centre of
the first tile, so a WSI viewer overlays it on the slide. Cells without a scored tile
(background, or tiles beyond the cap) are 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import highdicom as hd
import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from .. import __version__
from ..report import codes as c
from ..report.heatmap import (
    COLOUR_MAP,
    compose_overlay,
    grid_geometry,
    legend_strip,
    place_on_grid,
    stable_dimension_uids,
)
from . import codes as hc
from .result import CaseResult, SlideResult

__all__ = ["PM_SERIES_NUMBER", "build_parametric_map", "overlay_png", "tile_grid"]

Probability = Callable[[NDArray[np.float64]], NDArray[np.float64]]

#: Series Number of the HRD heatmaps (the SR's is 9001).
PM_SERIES_NUMBER = 9002


def tile_grid(slide: SlideResult, probability: Probability) -> tuple[NDArray[np.float32], float]:
    """Tile probabilities laid out on the tile grid.

    Returns
    -------
    tuple
        ``(grid, tile_size_px)``: a ``(rows, cols)`` float32 array (0 where no tile was
        scored) and the tile side in level-0 pixels.
    """
    tiles = slide.tiles
    if tiles is None or len(tiles) == 0:
        raise ValueError("the slide has no scored tiles")
    values = probability(tiles.score).astype(np.float32)
    grid, _ = place_on_grid(tiles.x, tiles.y, tiles.size, slide.width, slide.height, values)
    return grid, tiles.size


def build_parametric_map(
    result: CaseResult,
    slide: SlideResult,
    source: Dataset,
    probability: Probability,
    series_uid: str,
    sop_uid: str,
    instance_number: int,
) -> Any:
    """Build the heatmap Parametric Map of one slide.

    Parameters
    ----------
    result : CaseResult
        The case result (model identity for the header).
    slide : SlideResult
        The slide, with its tile scores.
    source : pydicom.dataset.Dataset
        The slide's level-0 VOLUME instance header (frame of reference, origin).
    probability : callable
        Maps tile scores to probabilities (the head's Platt function).
    series_uid, sop_uid : str
        Stable UIDs of the map.
    instance_number : int
        Instance number within the heatmap series.

    Returns
    -------
    highdicom.pm.ParametricMap
    """
    grid, size = tile_grid(slide, probability)
    position, orientation, measures = grid_geometry(source, size)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="HRD_P",
        lut_explanation="Tile-level HRD probability (image-based estimate)",
        unit=c.UCUM_NO_UNITS,
        value_range=(0.0, 1.0),
        slope=1.0,
        intercept=0.0,
        quantity_definition=hc.HRD_PROBABILITY_TILE,
    )
    tile = 256
    pm = hd.pm.ParametricMap(
        source_images=[source],
        pixel_array=grid,
        series_instance_uid=series_uid,
        series_number=PM_SERIES_NUMBER,
        sop_instance_uid=sop_uid,
        instance_number=instance_number,
        manufacturer="IHGAMP pathology gateway",
        manufacturer_model_name=result.model.head_name[:64],
        software_versions=f"ihgamp {__version__}; head {result.model.head_version}"[:64],
        device_serial_number="0",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        content_label="HRD_HEATMAP",
        content_description=(
            "Tile-level HRD probability"
            + (" (DEMO, not for clinical use)" if result.model.demo else "")
        )[:64],
        pixel_measures=measures,
        plane_orientation=orientation,
        plane_positions=[position],
        tile_pixel_array=True,
        tile_size=(min(tile, grid.shape[0]), min(tile, grid.shape[1])),
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5, window_width=1.0)],
    )
    stable_dimension_uids(pm)
    return pm


def overlay_png(
    thumbnail: NDArray[np.uint8],
    slide: SlideResult,
    probability: Probability,
    alpha: float = 0.55,
) -> bytes:
    """Render the heatmap over a slide thumbnail for people; return PNG bytes.

    Tile probabilities are coloured with the perceptual ``viridis`` map (0 dark blue,
    1 yellow) over the scored tiles; a legend strip below the slide shows the scale from
    0 to 1. The image is no larger than the thumbnail's longer side.

    Parameters
    ----------
    thumbnail : numpy.ndarray
        ``(H, W, 3)`` uint8 image of the whole slide (any resolution).
    slide : SlideResult
        The slide with its tile scores.
    probability : callable
        Tile score -> probability.
    alpha : float
        Opacity of the colour over scored tiles.
    """
    from matplotlib import colormaps

    grid, size = tile_grid(slide, probability)
    tiles = slide.tiles
    assert tiles is not None  # noqa: S101 - tile_grid checked it
    _, scored = place_on_grid(
        tiles.x, tiles.y, size, slide.width, slide.height, np.ones(len(tiles), dtype=bool), bool
    )
    values = np.clip(grid, 0.0, 1.0)
    colours = (colormaps[COLOUR_MAP](values)[..., :3] * 255).astype(np.uint8)
    thumb_w = thumbnail.shape[1]
    return compose_overlay(
        thumbnail,
        colours,
        scored,
        size,
        slide.width,
        slide.height,
        alpha,
        legend_strip(thumb_w, "tile-level HRD probability"),
    )
