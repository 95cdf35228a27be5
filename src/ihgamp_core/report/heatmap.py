"""Tile-level heatmaps: a DICOM Parametric Map registered to the slide, and a PNG overlay.

Because the head is linear up to the Platt sigmoid, every embedded tile has a score.
The heatmap shows the *tile-level HRD probability*: the case's Platt calibration applied
to each tile's score (indicative only; the case estimate is the mean-pooled one).

Parametric Map (highdicom): one pixel per tile grid cell, float32, in the slide's frame
of reference. Pixel spacing = tile side in mm; the first pixel's centre is the centre of
the first tile, so a WSI viewer overlays it on the slide. Cells without a scored tile
(background, or tiles beyond the cap) are 0.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from .. import __version__
from ..result import CaseResult, SlideResult
from ..uids import derived_uid
from . import codes as c

#: Series Number of the HRD heatmaps (the SR's is 9001).
PM_SERIES_NUMBER = 9002

__all__ = [
    "COLOUR_MAP",
    "build_parametric_map",
    "compose_overlay",
    "grid_geometry",
    "overlay_png",
    "place_on_grid",
    "stable_dimension_uids",
    "tile_grid",
]

Probability = Callable[[NDArray[np.float64]], NDArray[np.float64]]


def place_on_grid(
    x: NDArray[np.int64],
    y: NDArray[np.int64],
    size: float,
    width: int,
    height: int,
    values: NDArray[Any],
    dtype: Any = np.float32,
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Lay per-tile values out on the slide's tile grid.

    Parameters
    ----------
    x, y : numpy.ndarray
        Tile upper-left corners in level-0 pixels (on a grid of pitch ``size``).
    size : float
        Tile side in level-0 pixels.
    width, height : int
        Level-0 size of the slide.
    values : numpy.ndarray
        One value per tile.
    dtype : numpy dtype
        Grid type; cells without a tile are 0.

    Returns
    -------
    tuple
        ``(grid, scored)``: the ``(rows, cols)`` grid and where a tile was placed.
    """
    cols = np.rint(x / size).astype(int)
    rows = np.rint(y / size).astype(int)
    shape = (int(np.ceil(height / size)), int(np.ceil(width / size)))
    grid = np.zeros(shape, dtype=dtype)
    scored = np.zeros(shape, dtype=bool)
    grid[rows, cols] = values
    scored[rows, cols] = True
    return grid, scored


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


def stable_dimension_uids(dataset: Dataset) -> None:
    """Derive a multi-frame object's Dimension Organization UID from its SOP Instance UID.

    highdicom draws it at random; an object rebuilt for the same result must be the same
    object, element for element, so the UID is derived as the other output UIDs are.
    """
    uid = derived_uid("ihgamp-dimension-organization", str(dataset.SOPInstanceUID))
    for keyword in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in dataset.get(keyword, []):
            if "DimensionOrganizationUID" in item:
                item.DimensionOrganizationUID = uid


def grid_geometry(source: Dataset, size: float) -> tuple[Any, Any, Any]:
    """Plane position, orientation and pixel measures of a tile grid over ``source``.

    One grid pixel per tile: pixel spacing = tile side; the first pixel's centre is the
    centre of the first tile, in the slide coordinate system of ``source`` (the slide's
    level-0 VOLUME instance), so a WSI viewer overlays the grid on the slide.

    Returns
    -------
    tuple
        ``(PlanePositionSequence, PlaneOrientationSequence, PixelMeasuresSequence)``.
    """
    import highdicom as hd

    mpp_mm = float(
        source.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing[0]
    )
    spacing_mm = size * mpp_mm
    # Slide coordinates of the centre of the first tile (source pixel (size/2, size/2)).
    transformer = hd.spatial.ImageToReferenceTransformer.for_image(
        source, for_total_pixel_matrix=True
    )
    center = transformer(np.array([[size / 2.0, size / 2.0]]))[0]
    position = hd.PlanePositionSequence(
        coordinate_system=hd.CoordinateSystemNames.SLIDE,
        image_position=(float(center[0]), float(center[1]), float(center[2])),
        pixel_matrix_position=(1, 1),
    )
    orientation = hd.PlaneOrientationSequence(
        coordinate_system=hd.CoordinateSystemNames.SLIDE,
        image_orientation=[float(v) for v in source.ImageOrientationSlide],
    )
    measures = hd.PixelMeasuresSequence(
        pixel_spacing=(spacing_mm, spacing_mm),
        slice_thickness=float(
            source.SharedFunctionalGroupsSequence[0]
            .PixelMeasuresSequence[0]
            .get("SliceThickness", 0.001)
            or 0.001
        ),
    )
    return position, orientation, measures


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
    import highdicom as hd

    grid, size = tile_grid(slide, probability)
    position, orientation, measures = grid_geometry(source, size)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="HRD_P",
        lut_explanation="Tile-level HRD probability (image-based estimate)",
        unit=c.UCUM_NO_UNITS,
        value_range=(0.0, 1.0),
        slope=1.0,
        intercept=0.0,
        quantity_definition=c.HRD_PROBABILITY_TILE,
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


#: Perceptually uniform, readable in grey and by most colour-blind readers.
COLOUR_MAP = "viridis"


def _legend(width: int) -> Image.Image:
    """A white strip, ``width`` wide: the colour scale from 0 to 1, labelled."""
    from matplotlib import colormaps

    height = max(36, round(width * 0.12))
    font = ImageFont.load_default(size=max(8, height // 4))
    line = round(height / 4 * 1.2)
    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
    caption = "tile-level HRD probability"
    half_label = round(draw.textlength("0.5", font=font) / 2) + 2
    x0, x1 = half_label, max(half_label + 2, width - half_label)
    top, bottom = 2, 2 + round(height * 0.3)
    ramp = (colormaps[COLOUR_MAP](np.linspace(0.0, 1.0, x1 - x0))[:, :3] * 255).astype(np.uint8)
    strip.paste(Image.fromarray(np.repeat(ramp[np.newaxis], bottom - top, axis=0)), (x0, top))
    for value, x in ((0.0, x0), (0.5, (x0 + x1) / 2), (1.0, x1)):
        label = f"{value:g}"
        draw.text((x - draw.textlength(label, font=font) / 2, bottom + 1), label, "black", font)
    text_x = max(0.0, (width - draw.textlength(caption, font=font)) / 2)
    draw.text((text_x, bottom + 1 + line), caption, "black", font)
    return strip


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
        thumbnail, colours, scored, size, slide.width, slide.height, alpha, _legend(thumb_w)
    )


def compose_overlay(
    thumbnail: NDArray[np.uint8],
    colours: NDArray[np.uint8],
    scored: NDArray[np.bool_],
    size: float,
    width: int,
    height: int,
    alpha: float = 0.55,
    legend: Image.Image | None = None,
) -> bytes:
    """Paint a coloured tile grid over a slide thumbnail; return PNG bytes.

    With a ``legend`` (an image as wide as the thumbnail), it goes below the slide and
    the whole is kept within the thumbnail's longer side.

    Parameters
    ----------
    thumbnail : numpy.ndarray
        ``(H, W, 3)`` uint8 image of the whole slide (any resolution).
    colours : numpy.ndarray
        ``(rows, cols, 3)`` uint8 colour of each grid cell.
    scored : numpy.ndarray
        ``(rows, cols)`` cells to paint.
    size : float
        Tile side in level-0 pixels.
    width, height : int
        Level-0 size of the slide.
    alpha : float
        Opacity of the colour over painted cells.
    legend : PIL.Image.Image, optional
        A colour scale to show below the slide.
    """
    thumb_h, thumb_w = thumbnail.shape[:2]
    # Scale the grid to the thumbnail: each tile covers size/width of the width.
    cell_w = thumb_w * size / width
    cell_h = thumb_h * size / height
    out_w = int(round(colours.shape[1] * cell_w))
    out_h = int(round(colours.shape[0] * cell_h))
    colour_img = Image.fromarray(colours).resize((out_w, out_h), Image.Resampling.NEAREST)
    mask_img = Image.fromarray((scored * int(alpha * 255)).astype(np.uint8)).resize(
        (out_w, out_h), Image.Resampling.NEAREST
    )
    base = Image.fromarray(thumbnail).convert("RGB")
    layer = Image.new("RGB", base.size)
    layer.paste(colour_img.crop((0, 0, thumb_w, thumb_h)), (0, 0))
    mask = Image.new("L", base.size)
    mask.paste(mask_img.crop((0, 0, thumb_w, thumb_h)), (0, 0))
    composed = Image.composite(layer, base, mask)
    if legend is not None:
        framed = Image.new("RGB", (thumb_w, thumb_h + legend.height), "white")
        framed.paste(composed, (0, 0))
        framed.paste(legend, (0, thumb_h))
        longest = max(thumb_w, thumb_h)
        if framed.height > longest:  # keep within the thumbnail's size
            scale = longest / framed.height
            size_px = (max(1, round(thumb_w * scale)), longest)
            framed = framed.resize(size_px, Image.Resampling.LANCZOS)
        composed = framed
    buffer = io.BytesIO()
    # A 256-colour palette keeps a 1024 px thumbnail near 200 KB instead of 1 MB.
    composed.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        buffer, format="PNG", optimize=True
    )
    return buffer.getvalue()
