"""Vendor slide files (SVS, NDPI, MRXS, generic tiled TIFF, ...), read with OpenSlide.

Pixels come from OpenSlide. Compressed tiles, where the file format allows handing
them out unchanged (SVS, generic and Philips TIFF, ...), come from opentile, which
completes each JPEG tile with its tables so it decodes on its own.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import SlideOpenError, SlideReadError
from .base import LevelInfo, Slide, SlideInfo

__all__ = ["VendorSlide", "is_vendor_slide"]

logger = logging.getLogger(__name__)


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

    Raises
    ------
    SlideOpenError
        If OpenSlide cannot open the file.
    """

    def __init__(self, path: Path, mpp_override: float | None = None) -> None:
        import openslide

        self._path = Path(path)
        self._lock = threading.Lock()
        self._tiler: Any | None = None
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
            self._tiler = _open_tiler(self._path)
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
        """Return a stored tile's complete JPEG, when opentile supports the format."""
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
                return bytes(tiler_level.get_tile((col, row)))
        except Exception as exc:
            raise SlideReadError(
                f"{self.info.source}: cannot read tile ({col}, {row}) of level {level}: {exc}"
            ) from exc

    def close(self) -> None:
        """Close OpenSlide and opentile handles."""
        osr = getattr(self, "_osr", None)
        if osr is not None:
            osr.close()
        tiler = getattr(self, "_tiler", None)
        if tiler is not None:
            tiler.close()


def _open_tiler(path: Path) -> Any | None:
    """Open ``path`` with opentile, or return None where it has no support."""
    try:
        from opentile import OpenTile

        return OpenTile.open(path)
    except Exception:  # unsupported format or missing optional codec: no fast path
        return None


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
