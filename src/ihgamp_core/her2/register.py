"""Coarse registration of an IHC section to the H&E section of the same block.

Consecutive sections land on their slides shifted and slightly rotated. The HER2 dual
path needs, for every H&E tile, the IHC tile showing the same tissue. Method:

1. Tissue masks of both slides at ``mask_um`` um per pixel (the engine's detector,
   :func:`~ihgamp_core.tissue.tissue_mask`; for the IHC, whose haematoxylin counterstain
   is pale, with the saturation floor lowered from 0.07 to 0.04), placed on one
   zero-padded canvas.
2. For each angle in ``-max_angle_deg .. +max_angle_deg`` (``step_deg`` apart), rotate
   the IHC mask about the canvas centre, find the translation by cross-correlation
   (:func:`skimage.registration.phase_cross_correlation`), and score the overlap by
   intersection over union. The best angle wins.
3. An IoU below ``min_iou`` means the tissue does not match: the sections are not of
   the same block (or too damaged to pair) and the pair is refused
   (:class:`~ihgamp_core.errors.PairingError`), never scored as if it matched.

Coordinates are (row, col) = (y, x) in micrometres from the image origin.
:meth:`Registration.to_ihc` maps an H&E point to the IHC slide; :func:`read_ihc_patch`
reads the IHC tile that matches an H&E tile, rotated into the H&E tile's frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..errors import PairingError
from ..params import TissueParams
from ..slide.base import Slide
from ..slide.levels import choose_level
from ..slide.resample import read_resampled
from ..tissue import tissue_mask

__all__ = [
    "IHC_TISSUE",
    "Registration",
    "read_ihc_patch",
    "register_masks",
    "register_slides",
    "slide_mask",
]

#: IHC counterstain is paler than H&E: the saturation floor of the detector is lowered.
IHC_TISSUE = TissueParams(min_saturation=0.04)


@dataclass(frozen=True)
class Registration:
    """A rigid map from H&E to IHC slide coordinates (micrometres).

    ``ihc = R(angle) @ (he - shift - centre) + centre``, in (row, col) order.

    Parameters
    ----------
    angle_deg : float
        Rotation in the (row, col) frame.
    shift_um : tuple of float
        ``(row, col)`` translation.
    centre_um : tuple of float
        Rotation centre.
    iou : float
        Tissue overlap after alignment (0..1).
    mask_um : float
        Resolution the masks were aligned at.
    ihc_mask : numpy.ndarray
        The IHC tissue mask at ``mask_um`` (to check that a mapped tile lies on tissue).
    """

    angle_deg: float
    shift_um: tuple[float, float]
    centre_um: tuple[float, float]
    iou: float
    mask_um: float
    ihc_mask: NDArray[np.bool_]

    @property
    def rotation(self) -> NDArray[np.float64]:
        """The 2x2 rotation matrix in (row, col) order."""
        a = math.radians(self.angle_deg)
        return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])

    def to_ihc(self, rows_um: NDArray[np.float64], cols_um: NDArray[np.float64]) -> NDArray[Any]:
        """Map H&E points to IHC points; returns ``(N, 2)`` (row, col) in micrometres."""
        points = np.stack([rows_um, cols_um], axis=1) - np.add(self.shift_um, self.centre_um)
        return np.asarray(points @ self.rotation.T + np.asarray(self.centre_um))

    def on_ihc_tissue(self, points_um: NDArray[Any]) -> NDArray[np.bool_]:
        """Whether IHC points lie on the IHC tissue mask."""
        rc = np.floor(points_um / self.mask_um).astype(int)
        h, w = self.ihc_mask.shape
        inside = (rc[:, 0] >= 0) & (rc[:, 0] < h) & (rc[:, 1] >= 0) & (rc[:, 1] < w)
        result = np.zeros(len(rc), dtype=bool)
        result[inside] = self.ihc_mask[rc[inside, 0], rc[inside, 1]]
        return result

    def to_dict(self) -> dict[str, Any]:
        """JSON form (without the mask)."""
        return {
            "angle_deg": round(self.angle_deg, 3),
            "shift_um": [round(v, 2) for v in self.shift_um],
            "iou": round(self.iou, 4),
            "mask_um": self.mask_um,
        }


def slide_mask(
    slide: Slide, mask_um: float, params: TissueParams | None = None
) -> NDArray[np.bool_]:
    """The slide's tissue mask at ``mask_um`` micrometres per pixel."""
    step = max(1.0, mask_um / slide.base_mpp)
    return tissue_mask(read_resampled(slide, 0, step), params)


def _pad(mask: NDArray[np.bool_], shape: tuple[int, int]) -> NDArray[np.float64]:
    out = np.zeros(shape, dtype=np.float64)
    out[: mask.shape[0], : mask.shape[1]] = mask
    return out


def _iou(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    union = float(np.count_nonzero((a > 0.5) | (b > 0.5)))
    return float(np.count_nonzero((a > 0.5) & (b > 0.5))) / union if union else 0.0


def register_masks(
    fixed: NDArray[np.bool_],
    moving: NDArray[np.bool_],
    mask_um: float,
    max_angle_deg: float = 20.0,
    step_deg: float = 1.0,
) -> Registration:
    """Align ``moving`` (IHC) to ``fixed`` (H&E) (see the module docstring).

    Returns
    -------
    Registration
        The best rigid map and its IoU (no threshold applied here).
    """
    from scipy.ndimage import affine_transform, shift
    from skimage.registration import phase_cross_correlation

    height = int(1.5 * max(fixed.shape[0], moving.shape[0])) + 4
    width = int(1.5 * max(fixed.shape[1], moving.shape[1])) + 4
    f = _pad(fixed, (height, width))
    m = _pad(moving, (height, width))
    centre = np.array([height / 2.0, width / 2.0])
    best: tuple[float, float, NDArray[np.float64]] = (-1.0, 0.0, np.zeros(2))
    if not fixed.any() or not moving.any():
        return Registration(0.0, (0.0, 0.0), (0.0, 0.0), 0.0, mask_um, moving)
    for angle in np.arange(-max_angle_deg, max_angle_deg + 1e-9, step_deg):
        a = math.radians(float(angle))
        rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        # warped(p) = moving(R (p - c) + c)
        warped = affine_transform(m, rotation, offset=centre - rotation @ centre, order=0)
        offset, _, _ = phase_cross_correlation(f, warped, normalization=None)  # type: ignore[no-untyped-call]
        aligned = shift(warped, offset, order=0)
        iou = _iou(f, aligned)
        if iou > best[0] + 1e-9:
            best = (iou, float(angle), np.asarray(offset, dtype=np.float64))
    iou, angle, offset = best
    return Registration(
        angle_deg=angle,
        shift_um=(float(offset[0] * mask_um), float(offset[1] * mask_um)),
        centre_um=(float(centre[0] * mask_um), float(centre[1] * mask_um)),
        iou=iou,
        mask_um=mask_um,
        ihc_mask=moving,
    )


def register_slides(
    he: Slide,
    ihc: Slide,
    mask_um: float = 16.0,
    min_iou: float = 0.5,
    max_angle_deg: float = 20.0,
) -> Registration:
    """Register the IHC slide to the H&E slide of the same block.

    Raises
    ------
    PairingError
        If the tissue overlap after alignment is below ``min_iou``.
    """
    registration = register_masks(
        slide_mask(he, mask_um), slide_mask(ihc, mask_um, IHC_TISSUE), mask_um, max_angle_deg
    )
    if registration.iou < min_iou:
        raise PairingError(
            f"the H&E ({he.info.source}) and IHC ({ihc.info.source}) tissue do not match "
            f"(overlap {registration.iou:.2f} after alignment, below {min_iou:.2f}): not sections "
            "of the same block, or too damaged to pair; check the slides or score the H&E alone"
        )
    return registration


def read_ihc_patch(
    ihc: Slide,
    registration: Registration,
    centre_um: NDArray[Any],
    out_px: int,
    tile_mpp: float,
) -> NDArray[np.uint8]:
    """The IHC tile matching an H&E tile, in the H&E tile's frame.

    Parameters
    ----------
    ihc : Slide
        The IHC slide.
    registration : Registration
        H&E -> IHC map.
    centre_um : numpy.ndarray
        ``(row, col)`` of the tile centre on the IHC slide (from :meth:`Registration.to_ihc`).
    out_px : int
        Output side (the network input).
    tile_mpp : float
        The model's input spacing (chooses the IHC level to read).
    """
    mpps = [level.mpp for level in ihc.levels]
    choice = choose_level(mpps, out_px, tile_mpp)
    level_mpp = choice.level_mpp
    side = choice.read_px
    span = int(math.ceil(side * 1.5))  # room for the rotation
    row_px, col_px = centre_um[0] / level_mpp, centre_um[1] / level_mpp
    x0, y0 = int(round(col_px)) - span // 2, int(round(row_px)) - span // 2
    region = Image.fromarray(ihc.read_region(choice.level, x0, y0, span, span))
    r = registration.rotation
    cx, cy = col_px - x0, row_px - y0
    half = side / 2.0
    # PIL: input (x, y) = (a x + b y + c, d x + e y + f) for output (x, y); here
    # input (row, col) = centre + R (u_row, u_col) with u = output - half.
    coefficients = (
        r[1, 1],
        r[1, 0],
        cx - r[1, 1] * half - r[1, 0] * half,
        r[0, 1],
        r[0, 0],
        cy - r[0, 1] * half - r[0, 0] * half,
    )
    patch = region.transform(
        (side, side),
        Image.Transform.AFFINE,
        coefficients,
        resample=Image.Resampling.BILINEAR,
        fillcolor=(255, 255, 255),
    )
    if side != out_px:
        patch = patch.resize((out_px, out_px), Image.Resampling.BOX)
    return np.asarray(patch, dtype=np.uint8)
