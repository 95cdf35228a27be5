"""DICOM whole-slide images (VL Whole Slide Microscopy), read with wsidicom."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import SlideOpenError, SlideReadError
from .base import LevelInfo, Slide, SlideInfo

__all__ = ["DicomSlide", "transfer_syntax_compression"]

logger = logging.getLogger(__name__)

_COMPRESSION_BY_TRANSFER_SYNTAX = {
    "1.2.840.10008.1.2.4.50": "jpeg",
    "1.2.840.10008.1.2.4.51": "jpeg",
    "1.2.840.10008.1.2.4.57": "jpeg-lossless",
    "1.2.840.10008.1.2.4.70": "jpeg-lossless",
    "1.2.840.10008.1.2.4.80": "jpeg-ls",
    "1.2.840.10008.1.2.4.81": "jpeg-ls",
    "1.2.840.10008.1.2.4.90": "jpeg2000",
    "1.2.840.10008.1.2.4.91": "jpeg2000",
    "1.2.840.10008.1.2.4.201": "htj2k",
    "1.2.840.10008.1.2.4.202": "htj2k",
    "1.2.840.10008.1.2.4.203": "htj2k",
}


def transfer_syntax_compression(uid: str) -> str | None:
    """Return the tile encoding name for a DICOM transfer syntax (None = uncompressed)."""
    return _COMPRESSION_BY_TRANSFER_SYNTAX.get(str(uid))


class DicomSlide(Slide):
    """A DICOM WSI series (the VOLUME instances of one pyramid).

    Parameters
    ----------
    files : sequence of Path
        The series' instance files (other instances such as labels may be included).
    mpp_override : float or None
        Level-0 pixel spacing to use instead of the stored one.
    source : str or None
        How to name the slide in messages and results (defaults to the folder).

    Raises
    ------
    SlideOpenError
        If the files hold no readable WSI pyramid.
    """

    def __init__(
        self,
        files: Sequence[Path],
        mpp_override: float | None = None,
        source: str | None = None,
    ) -> None:
        from wsidicom import WsiDicom

        if not files:
            raise SlideOpenError("no DICOM files given")
        name = source or str(Path(files[0]).parent)
        try:
            self._wsi = WsiDicom.open([Path(f) for f in files])
        except Exception as exc:  # wsidicom raises many types for bad input
            raise SlideOpenError(
                f"{name}: not a readable DICOM whole-slide image series ({_describe(exc)})"
            ) from exc
        try:
            self._levels = list(self._wsi.levels)
            levels = tuple(self._describe_level(i, lvl) for i, lvl in enumerate(self._levels))
            uids = self._wsi.uids
            first = self._levels[0].datasets[0]
            info = SlideInfo(
                source=name,
                format="dicom",
                series_instance_uid=str(uids.series_instance) if uids else None,
                study_instance_uid=str(uids.study_instance) if uids else None,
                sop_instance_uids=tuple(
                    str(ds.SOPInstanceUID) for lvl in self._levels for ds in lvl.datasets
                ),
                container_identifier=_text(first.get("ContainerIdentifier")),
            )
            super().__init__(info, levels, mpp_override)
        except Exception:
            self._wsi.close()
            raise

    @staticmethod
    def _describe_level(index: int, level: Any) -> LevelInfo:
        mpp = level.mpp
        image_data = level.default_instance.image_data
        return LevelInfo(
            index=index,
            width=int(level.size.width),
            height=int(level.size.height),
            mpp_x=float(mpp.width) if mpp is not None else float("nan"),
            mpp_y=float(mpp.height) if mpp is not None else float("nan"),
            tile_width=int(level.tile_size.width),
            tile_height=int(level.tile_size.height),
            compression=transfer_syntax_compression(str(image_data.transfer_syntax)),
        )

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> NDArray[np.uint8]:
        """Read an RGB region of a level (see :meth:`Slide.read_region`)."""
        from wsidicom.geometry import Point, Region, Size

        lvl = self._levels[level]
        info = self.levels[level]
        # Clip to the image and pad with white, as OpenSlide does for regions outside.
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + width, info.width), min(y + height, info.height)
        out = np.full((height, width, 3), 255, dtype=np.uint8)
        if x1 <= x0 or y1 <= y0:
            return out
        try:
            image = lvl.get_region(Region(Point(x0, y0), Size(x1 - x0, y1 - y0)))
        except Exception as exc:
            raise SlideReadError(
                f"{self.info.source}: cannot read level {level} at ({x}, {y}): {_describe(exc)}"
            ) from exc
        out[y0 - y : y1 - y, x0 - x : x1 - x] = np.asarray(image.convert("RGB"))
        return out

    def read_encoded_tile(self, level: int, col: int, row: int) -> bytes | None:
        """Return the stored frame's bytes (complete JPEG/J2K codestream)."""
        from wsidicom.geometry import Point

        info = self.levels[level]
        if info.tile_width is None or info.tile_height is None:
            return None
        if (col + 1) * info.tile_width > info.width or (row + 1) * info.tile_height > info.height:
            return None  # edge tiles are padded in storage; they are never whole tiles
        try:
            data = bytes(self._levels[level].get_encoded_tile(Point(col, row)))
        except Exception as exc:
            raise SlideReadError(
                f"{self.info.source}: cannot read frame ({col}, {row}) of level {level}: "
                f"{_describe(exc)}"
            ) from exc
        if data.endswith(b"\xff\xd9\x00"):  # DICOM pads frames to even length; a JPEG
            data = data[:-1]  # stream ends at its EOI marker (strict decoders want that)
        return data

    def close(self) -> None:
        """Close the instance files."""
        self._wsi.close()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
