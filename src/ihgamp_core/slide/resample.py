"""Reading a whole slide at reduced resolution, in strips, with bounded memory."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from .base import Slide
from .levels import choose_thumbnail_level

__all__ = ["read_resampled", "read_thumbnail"]

#: Largest number of pixels read at once.
_STRIP_PIXELS = 32 * 1024 * 1024


def read_resampled(slide: Slide, level: int, step: float) -> NDArray[np.uint8]:
    """Read all of ``level`` downsampled by ``step`` (an area filter).

    The pixels are read from the coarsest pyramid level that is still fine enough,
    in horizontal strips of at most 32 Mpixel, so memory stays bounded for any slide.

    Parameters
    ----------
    slide : Slide
        The open slide.
    level : int
        The level whose geometry the output follows.
    step : float
        Pixels of ``level`` per output pixel (>= 1 for a reduction).

    Returns
    -------
    numpy.ndarray
        ``(floor(h / step), floor(w / step), 3)`` uint8.
    """
    ref = slide.levels[level]
    width_m = int(math.floor(ref.width / step))
    height_m = int(math.floor(ref.height / step))
    if width_m == 0 or height_m == 0:
        return np.zeros((height_m, width_m, 3), dtype=np.uint8)

    mpps = [lvl.mpp for lvl in slide.levels]
    source_index = choose_thumbnail_level(mpps, step * ref.mpp)
    source = slide.levels[source_index]
    fx = source.width / ref.width * step  # source pixels per output pixel (x)
    fy = source.height / ref.height * step
    extent_w = min(width_m * fx, float(source.width))
    read_w = min(int(math.ceil(extent_w)), source.width)

    rows_per_strip = max(1, int(_STRIP_PIXELS / max(read_w * fy, 1.0)))
    out = np.empty((height_m, width_m, 3), dtype=np.uint8)
    for r0 in range(0, height_m, rows_per_strip):
        r1 = min(height_m, r0 + rows_per_strip)
        top, bottom = r0 * fy, min(r1 * fy, float(source.height))
        y0 = int(math.floor(top))
        y1 = min(int(math.ceil(bottom)), source.height)
        strip = slide.read_region(source_index, 0, y0, read_w, y1 - y0)
        resized = Image.fromarray(strip).resize(
            (width_m, r1 - r0),
            resample=Image.Resampling.BOX,
            box=(0.0, top - y0, extent_w, bottom - y0),
        )
        out[r0:r1] = np.asarray(resized)
    return out


def read_thumbnail(slide: Slide, max_side: int = 1024) -> NDArray[np.uint8]:
    """A thumbnail of the whole slide whose longer side is at most ``max_side`` pixels."""
    base = slide.levels[0]
    step = max(1.0, max(base.width, base.height) / max_side)
    return read_resampled(slide, 0, step)
