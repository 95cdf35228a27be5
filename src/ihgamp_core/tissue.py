"""Tissue detection on a low-resolution image of the slide.

Method (parameters in :class:`ihgamp_core.params.TissueParams`):

1. Convert RGB to HSV. H&E-stained tissue is saturated (pink/purple); glass, empty
   background and most scanner fill is white or grey (saturation near 0).
2. Median-filter the saturation (``median_px``) to suppress JPEG and sensor noise.
3. Threshold with Otsu's method over the non-dark pixels, clamped to
   ``[min_saturation, max_saturation_threshold]``: the floor keeps a blank slide blank,
   the ceiling keeps pale stroma when dark tumour dominates the histogram.
4. Drop dark pixels (HSV value below ``min_value``: pen ink, folds, dust).
5. Morphology: a closing with a disk of ``closing_px`` joins nuclei and stroma, then
   holes smaller than ``min_hole_px`` are filled and regions smaller than
   ``min_object_px`` removed.

The mask is computed at 1/16 of a tile per pixel (8 um for the paper's tiles), so a
tile's tissue fraction is the mean of a 16 x 16 block of the mask.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from .params import TissueParams

__all__ = ["saturation_threshold", "tissue_mask"]


def saturation_threshold(saturation: NDArray[np.float64], params: TissueParams) -> float:
    """Return the clamped Otsu threshold for a saturation image (values in 0..1)."""
    from skimage.filters import threshold_otsu

    values = saturation.ravel()
    if values.size == 0 or float(values.max() - values.min()) < 1e-6:
        return params.min_saturation
    otsu = float(threshold_otsu(values, nbins=256))  # type: ignore[no-untyped-call]
    return float(np.clip(otsu, params.min_saturation, params.max_saturation_threshold))


def tissue_mask(rgb: NDArray[np.uint8], params: TissueParams | None = None) -> NDArray[np.bool_]:
    """Return the boolean tissue mask of an RGB image.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(H, W, 3)`` uint8 image, typically the slide at mask resolution.
    params : TissueParams, optional
        Detector parameters; defaults to :class:`TissueParams`.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool, True where there is tissue.
    """
    from scipy.ndimage import median_filter
    from skimage.morphology import closing, disk, remove_small_holes, remove_small_objects

    params = params or TissueParams()
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        return np.zeros(rgb.shape[:2], dtype=bool)

    channels = rgb.astype(np.float64) / 255.0
    value = channels.max(axis=2)
    chroma = value - channels.min(axis=2)
    saturation = np.divide(chroma, value, out=np.zeros_like(value), where=value > 0)
    if params.median_px > 1:
        saturation = median_filter(saturation, size=params.median_px, mode="nearest")

    bright = value >= params.min_value
    threshold = saturation_threshold(saturation[bright], params)
    mask = (saturation > threshold) & bright
    if params.closing_px > 0:
        mask = closing(mask, disk(params.closing_px))  # type: ignore[no-untyped-call]
    if params.min_hole_px > 0:
        mask = remove_small_holes(mask, max_size=params.min_hole_px)
    if params.min_object_px > 0:
        mask = remove_small_objects(mask, max_size=params.min_object_px)
    return np.asarray(mask, dtype=bool)
