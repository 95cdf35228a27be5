"""The one slide interface every reader implements."""

from __future__ import annotations

import abc
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import PixelSpacingError, SlideReadError

__all__ = ["MAX_LEVEL_PIXELS", "LevelInfo", "Slide", "SlideInfo"]

logger = logging.getLogger(__name__)

#: Refuse pyramids whose level 0 holds more pixels than this (a 1.2 m x 1.2 m slide
#: at 0.25 um/px is far beyond any scanner; such sizes mean corrupt headers).
MAX_LEVEL_PIXELS = 4_000_000 * 4_000_000


@dataclass(frozen=True)
class LevelInfo:
    """One pyramid level as stored in the file.

    Parameters
    ----------
    index : int
        Position in :attr:`Slide.levels` (0 = full resolution).
    width, height : int
        Size in pixels.
    mpp_x, mpp_y : float
        Pixel spacing in micrometres per pixel.
    tile_width, tile_height : int or None
        Stored tile geometry, when the level is tiled.
    compression : str or None
        Stored encoding of the tiles (``"jpeg"``, ``"jpeg2000"``, ...), when known.
    """

    index: int
    width: int
    height: int
    mpp_x: float
    mpp_y: float
    tile_width: int | None = None
    tile_height: int | None = None
    compression: str | None = None

    @property
    def mpp(self) -> float:
        """Mean of the two pixel spacings (um/px)."""
        return (self.mpp_x + self.mpp_y) / 2.0


@dataclass(frozen=True)
class SlideInfo:
    """What identifies a slide in results and reports (no patient data).

    Parameters
    ----------
    source : str
        Path of the file or folder the slide was opened from.
    format : str
        Reader and vendor, e.g. ``"dicom"``, ``"aperio"``, ``"hamamatsu"``.
    series_instance_uid : str or None
        DICOM Series Instance UID of the slide's images (DICOM slides only).
    study_instance_uid : str or None
        DICOM Study Instance UID (DICOM slides only).
    sop_instance_uids : tuple of str
        SOP Instance UIDs of the volume images (DICOM slides only).
    container_identifier : str or None
        The glass slide's identifier (DICOM Container Identifier), when present.
    """

    source: str
    format: str
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    sop_instance_uids: tuple[str, ...] = ()
    container_identifier: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The slide's identity in a result document (every analysis' ``slides`` rows)."""
        return {
            "source": self.source,
            "format": self.format,
            "series_instance_uid": self.series_instance_uid,
            "study_instance_uid": self.study_instance_uid,
            "sop_instance_uids": list(self.sop_instance_uids),
            "container_identifier": self.container_identifier,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlideInfo:
        """Read :meth:`to_dict`'s fields back (``KeyError`` when one is missing)."""
        return cls(
            source=data["source"],
            format=data["format"],
            series_instance_uid=data["series_instance_uid"],
            study_instance_uid=data["study_instance_uid"],
            sop_instance_uids=tuple(data["sop_instance_uids"]),
            container_identifier=data["container_identifier"],
        )


class Slide(abc.ABC):
    """A whole-slide image opened for reading.

    Subclasses fill :attr:`levels` (finest first) and implement the two read methods.
    Coordinates passed to the read methods are pixels of the given level.

    Parameters
    ----------
    info : SlideInfo
        Identity of the slide.
    levels : tuple of LevelInfo
        The pyramid, finest first. Levels with unknown spacing carry ``nan``.
    mpp_override : float or None
        Level-0 pixel spacing to use instead of (or in the absence of) the stored one;
        the other levels are scaled by their size ratio to level 0.

    Raises
    ------
    PixelSpacingError
        If the slide stores no pixel spacing and no override is given.
    SlideReadError
        If the pyramid is empty or absurdly large.
    """

    def __init__(
        self, info: SlideInfo, levels: tuple[LevelInfo, ...], mpp_override: float | None
    ) -> None:
        if not levels:
            raise SlideReadError(f"{info.source}: the slide has no image levels")
        base = levels[0]
        if base.width <= 0 or base.height <= 0 or base.width * base.height > MAX_LEVEL_PIXELS:
            raise SlideReadError(
                f"{info.source}: implausible image size {base.width} x {base.height} px"
            )
        if mpp_override is not None:
            if not 0.01 <= mpp_override <= 100.0:
                raise PixelSpacingError(f"--mpp {mpp_override} is outside 0.01..100 um/px")
            if np.isfinite(base.mpp) and abs(base.mpp - mpp_override) > 0.01 * base.mpp:
                logger.warning(
                    "pixel spacing override differs from the stored value",
                    extra={"source": info.source, "stored": base.mpp, "override": mpp_override},
                )
            levels = tuple(_rescaled(level, base, mpp_override) for level in levels)
        elif not (np.isfinite(base.mpp_x) and np.isfinite(base.mpp_y) and base.mpp > 0):
            raise PixelSpacingError(
                f"{info.source}: the slide stores no pixel spacing; "
                "give it with --mpp (micrometres per pixel at full resolution)"
            )
        self.info = info
        self.levels = levels

    @property
    def base_mpp(self) -> float:
        """Level-0 pixel spacing in um/px."""
        return self.levels[0].mpp

    @abc.abstractmethod
    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> NDArray[np.uint8]:
        """Read an RGB region of ``level``.

        Parameters
        ----------
        level : int
            Index into :attr:`levels`.
        x, y : int
            Upper-left corner in pixels of that level.
        width, height : int
            Region size in pixels.

        Returns
        -------
        numpy.ndarray
            ``(height, width, 3)`` uint8 RGB; areas outside the image are white.

        Raises
        ------
        SlideReadError
            If the pixel data cannot be decoded.
        """

    @abc.abstractmethod
    def read_encoded_tile(self, level: int, col: int, row: int) -> bytes | None:
        """Return one stored tile's compressed bytes, or ``None`` when unavailable.

        The bytes form a complete, standalone image (for JPEG: tables included) that
        decodes to the same pixels as :meth:`read_region` over the tile's extent.

        Parameters
        ----------
        level : int
            Index into :attr:`levels`.
        col, row : int
            Tile position in the level's stored tile grid.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, readers override it when needed
        """Release file handles."""

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _rescaled(level: LevelInfo, base: LevelInfo, base_mpp: float) -> LevelInfo:
    sx = base.width / level.width
    sy = base.height / level.height
    return LevelInfo(
        index=level.index,
        width=level.width,
        height=level.height,
        mpp_x=base_mpp * sx,
        mpp_y=base_mpp * sy,
        tile_width=level.tile_width,
        tile_height=level.tile_height,
        compression=level.compression,
    )
