"""Stored JPEG tiles of a tiled TIFF (SVS, generic pyramidal TIFF), read with tifffile.

The fallback for :class:`~ihgamp_core.slide.vendor.VendorSlide`'s compressed path when
opentile cannot open a file: opentile's tilers load the TurboJPEG library
(``libturbojpeg``) when they open a file, and a machine without it (the GPU machines
we benchmark on, for one) would otherwise lose the compressed path and read every tile
as decoded pixels through OpenSlide. The tiles handed out are byte for byte what
opentile hands out for SVS levels: the stored frame with the page's JPEG tables
(``JPEGTables``, an abbreviated stream ``SOI tables EOI``) inserted before its start of
scan, as opentile's ``Jpeg.add_jpeg_tables`` does. This module does not import opentile,
so it works where opentile and its dependencies are not installed either.

Aperio writes damaged tiles in the last column and row of some downsampled levels
(opentile rebuilds them from the level above); those tiles are not handed out here,
so they take the pixel path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TiffJpegLevel", "TiffJpegTiler", "with_jpeg_tables"]


@dataclass(frozen=True)
class _Size:
    width: int
    height: int


class TiffJpegLevel:
    """One tiled, JPEG-compressed TIFF page: its geometry and its stored tiles.

    Parameters
    ----------
    page : tifffile.TiffPage
        The page (tiled, JPEG, 3 samples, contiguous).
    index : int
        Its level index in the pyramid (0 = full resolution).
    lock : threading.Lock
        Serialises reads of the shared file handle.

    Attributes
    ----------
    image_size, tile_size : _Size
        Width and height in pixels (opentile's attribute names, so that the vendor
        reader matches levels the same way for both).
    compression : str
        Always ``"jpeg"``.
    """

    compression = "jpeg"

    def __init__(self, page: Any, index: int, lock: threading.Lock) -> None:
        self._page = page
        self._index = index
        self._lock = lock
        self.image_size = _Size(int(page.imagewidth), int(page.imagelength))
        self.tile_size = _Size(int(page.tilewidth), int(page.tilelength))
        self._columns = -(-self.image_size.width // self.tile_size.width)
        self._rows = -(-self.image_size.height // self.tile_size.height)

    def get_tile(self, position: tuple[int, int]) -> bytes | None:
        """Return the complete JPEG stream of the tile at ``(column, row)``.

        None for a tile on a downsampled level's last column or row (see the module
        docstring) and for a tile the file does not store.

        Raises
        ------
        ValueError
            If the tile is outside the level.
        """
        col, row = position
        if not (0 <= col < self._columns and 0 <= row < self._rows):
            raise ValueError(f"tile ({col}, {row}) is outside the level")
        if self._index > 0 and (col == self._columns - 1 or row == self._rows - 1):
            return None
        frame = row * self._columns + col
        offset = int(self._page.dataoffsets[frame])
        count = int(self._page.databytecounts[frame])
        if count == 0:
            return None
        with self._lock:
            handle = self._page.parent.filehandle
            handle.seek(offset)
            data = handle.read(count)
        return with_jpeg_tables(bytes(data), self._page.jpegtables)


def with_jpeg_tables(frame: bytes, tables: bytes | None) -> bytes:
    """Complete an abbreviated JPEG ``frame`` with a TIFF page's ``JPEGTables``.

    The tables' segments (without their SOI and EOI markers) go in front of the frame's
    start-of-scan marker; a frame without tables to add is returned as it is.
    """
    if not tables or len(tables) < 4:
        return frame
    start_of_scan = frame.find(b"\xff\xda")
    if start_of_scan < 0:
        return frame
    return frame[:start_of_scan] + tables[2:-2] + frame[start_of_scan:]


class TiffJpegTiler:
    """The tiled JPEG levels of a TIFF file's first image series.

    Parameters
    ----------
    path : Path
        The TIFF file.

    Attributes
    ----------
    levels : list of TiffJpegLevel
        Tiled, JPEG-compressed, 3-sample levels only (others are left out).

    Raises
    ------
    ValueError
        If tifffile cannot read the file or it has no such level.
    """

    def __init__(self, path: Path) -> None:
        import tifffile

        try:
            self._tif = tifffile.TiffFile(path)
        except Exception as exc:  # tifffile raises several types for non-TIFF data
            raise ValueError(f"{path}: not a TIFF file tifffile reads ({exc})") from exc
        lock = threading.Lock()
        self.levels: list[TiffJpegLevel] = []
        try:
            series = self._tif.series[0] if self._tif.series else None
            for index, level in enumerate(series.levels if series is not None else []):
                page = level.keyframe
                if (
                    page.is_tiled
                    and page.compression == tifffile.COMPRESSION.JPEG
                    and page.samplesperpixel == 3
                    and page.planarconfig == tifffile.PLANARCONFIG.CONTIG
                    and page.tiledepth == 1
                ):
                    self.levels.append(TiffJpegLevel(page, index, lock))
        except Exception:
            self._tif.close()
            raise
        if not self.levels:
            self._tif.close()
            raise ValueError(f"{path}: no tiled JPEG levels")

    def close(self) -> None:
        """Close the file."""
        self._tif.close()
