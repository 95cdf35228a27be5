"""The heatmap PNG for people: perceptual colour map over the tiles, legend from 0 to 1."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from ihgamp_core.hrd.maps import overlay_png
from ihgamp_core.hrd.result import SlideResult, TileScores
from ihgamp_core.slide.base import SlideInfo

pytestmark = pytest.mark.unit

TILE = 256


def _slide(cols: int, rows: int, scores: np.ndarray) -> SlideResult:
    """A slide whose every grid cell holds one scored tile (row-major scores)."""
    ys, xs = np.mgrid[0:rows, 0:cols]
    x = (xs.ravel() * TILE).astype(np.int64)
    y = (ys.ravel() * TILE).astype(np.int64)
    tiles = TileScores(
        x, y, float(TILE), x * 0.5, y * 0.5, TILE * 0.5, np.ones(x.size, np.float32), scores
    )
    return SlideResult(
        SlideInfo("synthetic", "test"),
        cols * TILE,
        rows * TILE,
        0.5,
        0,
        0.5,
        0.5,
        False,
        x.size,
        x.size,
        x.size,
        1.0,
        None,
        tiles=tiles,
    )


def _identity(scores: np.ndarray) -> np.ndarray:
    return scores


def _png(thumb: np.ndarray, slide: SlideResult, alpha: float = 1.0) -> np.ndarray:
    data = overlay_png(thumb, slide, _identity, alpha=alpha)
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB")).astype(int)


def _viridis(value: float) -> np.ndarray:
    return (np.asarray(colormaps["viridis"](value)[:3]) * 255).astype(int)


def test_tiles_are_coloured_with_viridis() -> None:
    # Two tiles side by side: probability 0 (left) and 1 (right), fully opaque.
    slide = _slide(2, 1, np.array([0.0, 1.0]))
    thumb = np.full((200, 400, 3), 128, np.uint8)
    rgb = _png(thumb, slide)
    left, right = rgb[100, 100], rgb[100, 300]
    # The palette quantisation moves colours by a few levels at most.
    assert np.abs(left - _viridis(0.0)).max() <= 8, left
    assert np.abs(right - _viridis(1.0)).max() <= 8, right


def test_a_legend_from_0_to_1_lies_below_the_slide() -> None:
    slide = _slide(4, 1, np.array([0.1, 0.4, 0.6, 0.9]))
    thumb = np.full((100, 400, 3), 200, np.uint8)
    rgb = _png(thumb, slide, alpha=0.5)
    height, width = rgb.shape[:2]
    assert height > 100 and width == 400  # the legend strip is added below
    legend = rgb[100:]
    # The colour ramp: rows almost all coloured, from viridis(0) to viridis(1).
    not_white = np.abs(legend - 255).sum(axis=2) > 30
    row = int(np.argmax(not_white.mean(axis=1) > 0.8))
    assert not_white[row].mean() > 0.8, "no colour ramp in the legend"
    ramp = legend[row]
    coloured = np.where(not_white[row])[0]
    start, end = ramp[coloured[0] + 1], ramp[coloured[-1] - 1]
    assert np.abs(start - _viridis(0.0)).max() <= 12, start
    assert np.abs(end - _viridis(1.0)).max() <= 12, end
    # Labels: dark text pixels below the ramp.
    below = legend[row + 3 :]
    assert (below.sum(axis=2) < 200).sum() > 20


def test_the_image_stays_within_the_thumbnail_size() -> None:
    slide = _slide(2, 2, np.array([0.2, 0.4, 0.6, 0.8]))
    thumb = np.full((512, 512, 3), 200, np.uint8)
    rgb = _png(thumb, slide)
    assert max(rgb.shape[:2]) <= 512
