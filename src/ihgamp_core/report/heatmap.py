"""Maps over slides, shared by every analysis.

Maps over slides, shared by every analysis: tile grids placed in the slide's frame of
reference, spatial geometry for map objects (Parametric Map, Segmentation), stable UIDs
and PNG overlays for people. Each analysis builds its own objects with these
(``hrd/maps.py``, ``her2/reports.py``).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from ..uids import derived_uid

__all__ = [
    "COLOUR_MAP",
    "compose_overlay",
    "grid_geometry",
    "place_on_grid",
    "stable_dimension_uids",
]


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


#: Perceptually uniform, readable in grey and by most colour-blind readers.
COLOUR_MAP = "viridis"


def legend_strip(width: int, caption: str) -> Image.Image:
    """A white strip, ``width`` wide: the colour scale from 0 to 1, labelled, captioned."""
    from matplotlib import colormaps

    height = max(36, round(width * 0.12))
    font = ImageFont.load_default(size=max(8, height // 4))
    line = round(height / 4 * 1.2)
    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
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
