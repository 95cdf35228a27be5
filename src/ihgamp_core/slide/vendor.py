"""Vendor slide files (SVS, NDPI, MRXS, generic tiled TIFF, ...), read with OpenSlide.

Pixels come from OpenSlide. Compressed tiles, where the file format allows handing
them out unchanged (SVS, generic and Philips TIFF, ...), come from opentile, which
completes each JPEG tile with its tables so it decodes on its own. Where opentile
cannot open a file (it needs the TurboJPEG library, ``libturbojpeg``, which not every
machine has; or the format is one it does not know), tiled JPEG TIFF levels are read
with tifffile instead (:mod:`.tiff_tiles`), so the compressed path does not depend on
TurboJPEG.

The environment variable ``IHGAMP_VENDOR_TILES`` chooses the stored-tile reader:
``auto`` (default: opentile, else tifffile), ``tifffile`` (skip opentile, as on a
machine without libturbojpeg; the GPU benchmark's CPU rehearsal uses it) or ``none``
(no compressed path: every tile is read as pixels).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ParameterError, SlideOpenError, SlideReadError
from .base import LevelInfo, Slide, SlideInfo

__all__ = ["TILE_READERS", "VendorSlide", "is_vendor_slide", "stored_tile_reader_choice"]

logger = logging.getLogger(__name__)

#: Values of ``IHGAMP_VENDOR_TILES`` (see the module docstring).
TILE_READERS = ("auto", "tifffile", "none")


def stored_tile_reader_choice() -> str:
    """The stored-tile reader chosen by ``IHGAMP_VENDOR_TILES`` (default ``auto``).

    Raises
    ------
    ParameterError
        If the variable holds another value.
    """
    choice = os.environ.get("IHGAMP_VENDOR_TILES", "auto").strip().lower() or "auto"
    if choice not in TILE_READERS:
        raise ParameterError(
            f"IHGAMP_VENDOR_TILES={choice!r} is not one of {', '.join(TILE_READERS)}"
        )
    return choice


def is_vendor_slide(path: Path) -> bool:
    """Return whether OpenSlide recognises ``path`` as a slide it can read."""
    import openslide

    try:
        return openslide.OpenSlide.detect_format(str(path)) is not None
    except Exception:  # detect_format raises for unreadable files
        return False


class VendorSlide(Slide):
    """A slide file read with OpenSlide.

    Parameters
    ----------
    path : Path
        The slide file (for MRXS, the ``.mrxs`` index file).
    mpp_override : float or None
        Level-0 pixel spacing to use instead of the stored one.

    Attributes
    ----------
    tile_reader : {"opentile", "tifffile"} or None
        Which library hands out the stored tiles (None: no compressed path).

    Raises
    ------
    SlideOpenError
        If OpenSlide cannot open the file.
    ParameterError
        If ``IHGAMP_VENDOR_TILES`` holds an unknown value.
    """

    def __init__(self, path: Path, mpp_override: float | None = None) -> None:
        import openslide

        self._path = Path(path)
        self._lock = threading.Lock()
        self._tiler: Any | None = None
        self.tile_reader: str | None = None
        try:
            self._osr = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise SlideOpenError(f"{path}: not a whole-slide image format OpenSlide reads") from exc
        except (openslide.OpenSlideError, OSError) as exc:
            raise SlideOpenError(f"{path}: the slide file is damaged or truncated ({exc})") from exc
        try:
            props = self._osr.properties
            vendor = props.get("openslide.vendor", "unknown")
            mpp_x = _float(props.get("openslide.mpp-x"))
            mpp_y = _float(props.get("openslide.mpp-y"))
            base_w, base_h = self._osr.level_dimensions[0]
            levels = []
            for index, (w, h) in enumerate(self._osr.level_dimensions):
                tw = _int(props.get(f"openslide.level[{index}].tile-width"))
                th = _int(props.get(f"openslide.level[{index}].tile-height"))
                levels.append(
                    LevelInfo(
                        index=index,
                        width=int(w),
                        height=int(h),
                        mpp_x=mpp_x * base_w / w,
                        mpp_y=mpp_y * base_h / h,
                        tile_width=tw,
                        tile_height=th,
                        compression=None,
                    )
                )
            self._tiler, self.tile_reader = _open_tiler(self._path)
            self._tiler_levels = _match_tiler_levels(self._tiler, levels)
            levels = [
                replace(lvl, compression=self._tiler_levels[i][1])
                if i in self._tiler_levels
                else lvl
                for i, lvl in enumerate(levels)
            ]
            super().__init__(
                SlideInfo(source=str(path), format=vendor), tuple(levels), mpp_override
            )
        except Exception:
            self.close()
            raise

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> NDArray[np.uint8]:
        """Read an RGB region of a level (see :meth:`Slide.read_region`)."""
        import openslide

        ds = self._osr.level_downsamples[level]
        try:
            image = self._osr.read_region(
                (int(round(x * ds)), int(round(y * ds))), level, (width, height)
            )
        except openslide.OpenSlideError as exc:
            raise SlideReadError(
                f"{self.info.source}: cannot read level {level} at ({x}, {y}); "
                f"the file is damaged or truncated ({exc})"
            ) from exc
        rgba = np.asarray(image)
        rgb = rgba[..., :3].copy()
        # OpenSlide returns premultiplied RGBA; fully transparent = outside the scan area.
        rgb[rgba[..., 3] == 0] = 255
        return rgb

    def read_encoded_tile(self, level: int, col: int, row: int) -> bytes | None:
        """Return a stored tile's complete JPEG, where opentile or tifffile hands it out."""
        entry = self._tiler_levels.get(level)
        if entry is None:
            return None
        tiler_level, _ = entry
        info = self.levels[level]
        assert info.tile_width is not None and info.tile_height is not None  # noqa: S101
        if (col + 1) * info.tile_width > info.width or (row + 1) * info.tile_height > info.height:
            return None
        try:
            with self._lock:
                tile = tiler_level.get_tile((col, row))
            return None if tile is None else bytes(tile)
        except Exception as exc:
            raise SlideReadError(
                f"{self.info.source}: cannot read tile ({col}, {row}) of level {level}: {exc}"
            ) from exc

    def close(self) -> None:
        """Close the OpenSlide and stored-tile reader handles."""
        osr = getattr(self, "_osr", None)
        if osr is not None:
            osr.close()
        tiler = getattr(self, "_tiler", None)
        if tiler is not None:
            tiler.close()


def _open_tiler(path: Path) -> tuple[Any | None, str | None]:
    """Open ``path`` for its stored tiles: ``(tiler, reader name)``, or ``(None, None)``."""
    from .tiff_tiles import TiffJpegTiler

    choice = stored_tile_reader_choice()
    if choice == "none":
        return None, None
    if choice == "auto":
        try:
            from opentile import OpenTile

            return OpenTile.open(path), "opentile"
        except Exception as exc:  # unknown format, no libturbojpeg, missing codec
            logger.debug("opentile cannot open the slide", extra={"why": str(exc)[:200]})
    try:
        tiler = TiffJpegTiler(path)
    except ValueError as exc:  # not a tiled JPEG TIFF: no compressed path
        logger.debug("no stored JPEG tiles", extra={"why": str(exc)[:200]})
        return None, None
    return tiler, "tifffile"


def _match_tiler_levels(tiler: Any | None, levels: list[LevelInfo]) -> dict[int, tuple[Any, str]]:
    """Map OpenSlide level index -> (opentile level, "jpeg") for same-geometry JPEG levels.

    Only baseline JPEG tiles are handed out: they are what GPU decoders accept.
    """
    if tiler is None:
        return {}
    found: dict[int, tuple[Any, str]] = {}
    for tiler_level in tiler.levels:
        try:
            size = tiler_level.image_size
            tile = tiler_level.tile_size
            compression = getattr(tiler_level.compression, "name", str(tiler_level.compression))
        except Exception:  # noqa: S112 - a level opentile cannot describe has no fast path
            continue
        for lvl in levels:
            if (
                lvl.width == size.width
                and lvl.height == size.height
                and lvl.tile_width == tile.width
                and lvl.tile_height == tile.height
            ) and str(compression).lower() == "jpeg":
                found[lvl.index] = (tiler_level, "jpeg")
    return found


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
