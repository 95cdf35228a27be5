"""Choosing the pyramid level that tiles are read from.

Rule (paper: tiles at 0.5 um/px):

1. If a stored level lies within ``tolerance`` (relative) of the target spacing, read
   it as it is: a 256 px tile is 256 stored pixels. The closest such level wins.
2. Otherwise read the *coarsest level that is still finer* than the target, a
   footprint of ``round(256 * target / level_mpp)`` stored pixels, and downsample
   that to 256 px with an area (box) filter, which is anti-aliased.
3. If every level is coarser than the target, there is no usable level.

With ``target_mpp=None`` (public-notebook preset) level 0 is read as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import NoUsableLevelError

__all__ = ["LevelChoice", "choose_level", "choose_thumbnail_level"]


@dataclass(frozen=True)
class LevelChoice:
    """Where and how tiles are read.

    Parameters
    ----------
    level : int
        Index of the level that is read.
    level_mpp : float
        That level's pixel spacing (um/px).
    read_px : int
        Side of one tile's footprint in that level's pixels.
    out_px : int
        Side of the tile handed to the backbone's preprocessing (the preset's tile size).
    """

    level: int
    level_mpp: float
    read_px: int
    out_px: int

    @property
    def resampled(self) -> bool:
        """Whether tiles are downsampled after reading."""
        return self.read_px != self.out_px

    @property
    def effective_mpp(self) -> float:
        """Pixel spacing of the tiles given to the backbone (um/px)."""
        return self.level_mpp * self.read_px / self.out_px

    @property
    def tile_um(self) -> float:
        """Side of one tile in micrometres."""
        return self.level_mpp * self.read_px


def choose_level(
    level_mpps: Sequence[float],
    tile_px: int = 256,
    target_mpp: float | None = 0.5,
    tolerance: float = 0.10,
) -> LevelChoice:
    """Choose the level to read tiles from (see the module docstring).

    Parameters
    ----------
    level_mpps : sequence of float
        Pixel spacing of each level, finest first.
    tile_px : int
        Tile side at the target spacing.
    target_mpp : float or None
        Target spacing; ``None`` reads level 0 unchanged.
    tolerance : float
        Relative tolerance for rule 1.

    Returns
    -------
    LevelChoice

    Raises
    ------
    NoUsableLevelError
        If every level is coarser than ``target_mpp * (1 + tolerance)``.
    """
    if not level_mpps:
        raise NoUsableLevelError("the slide has no levels")
    if target_mpp is None:
        return LevelChoice(level=0, level_mpp=level_mpps[0], read_px=tile_px, out_px=tile_px)

    # The bounds are inclusive: 0.45 and 0.55 um/px are within 10 % of 0.5, whatever
    # the floating-point rounding of 0.55 - 0.5 (hence the 1e-9 um/px of slack).
    within = [
        (abs(mpp - target_mpp), index)
        for index, mpp in enumerate(level_mpps)
        if abs(mpp - target_mpp) <= tolerance * target_mpp + 1e-9
    ]
    if within:
        _, index = min(within)
        return LevelChoice(
            level=index, level_mpp=level_mpps[index], read_px=tile_px, out_px=tile_px
        )

    finer = [(mpp, index) for index, mpp in enumerate(level_mpps) if mpp < target_mpp]
    if not finer:
        raise NoUsableLevelError(
            f"the finest level is {min(level_mpps):.3f} um/px, coarser than the "
            f"{target_mpp} um/px the model needs (20x equivalent); rescan at 20x or 40x"
        )
    mpp, index = max(finer)
    read_px = round(tile_px * target_mpp / mpp)
    return LevelChoice(level=index, level_mpp=mpp, read_px=read_px, out_px=tile_px)


def choose_thumbnail_level(level_mpps: Sequence[float], mask_mpp: float) -> int:
    """Return the coarsest level whose spacing is at most ``mask_mpp``.

    The tissue mask is computed at ``mask_mpp``; reading the coarsest level that is
    still at least that fine keeps the read small without losing detail. Falls back
    to level 0 when even level 0 is coarser.

    Parameters
    ----------
    level_mpps : sequence of float
        Pixel spacing of each level, finest first.
    mask_mpp : float
        Spacing of one tissue-mask pixel.
    """
    candidates = [(mpp, index) for index, mpp in enumerate(level_mpps) if mpp <= mask_mpp * 1.001]
    if not candidates:
        return 0
    return max(candidates)[1]
