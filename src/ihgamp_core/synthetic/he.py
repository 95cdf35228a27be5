"""Synthetic H&E-like tissue whose morphology depends on a hidden binary label.

The images are rendered in optical density and converted to RGB with Beer-Lambert
stain mixing (Ruifrok & Johnston's haematoxylin and eosin vectors), so colours and
their variations look like H&E. The label changes what the paper associates with
HRD: more and larger nuclei of more variable size (pleomorphism), darker chromatin,
and denser lymphocytic infiltration. Each case also draws its own stain intensity and
density, so the label is learnable but not trivially separable.

Everything is drawn from :class:`numpy.random.Generator` (PCG64) seeded by the
caller: same seed, same pixels on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from PIL import Image

__all__ = ["CaseStyle", "Morphology", "case_style", "render_tissue", "tissue_shape"]

_H_VECTOR = np.array([0.650, 0.704, 0.286], dtype=np.float32)
_E_VECTOR = np.array([0.072, 0.990, 0.105], dtype=np.float32)
_BACKGROUND_OD = np.array([0.03, 0.035, 0.03], dtype=np.float32)


@dataclass(frozen=True)
class Morphology:
    """Label-dependent tissue parameters (physical units)."""

    nuclei_per_mm2: float
    radius_um: float
    radius_sd_um: float
    elongation: float
    chromatin: float
    lymphocytes_per_mm2: float
    eosin: float


_MORPHOLOGY = {
    0: Morphology(3200.0, 3.4, 0.4, 1.45, 0.95, 250.0, 0.55),
    1: Morphology(5600.0, 4.6, 1.3, 1.15, 1.25, 1400.0, 0.45),
}


@dataclass(frozen=True)
class CaseStyle:
    """One case's morphology after its own random variation.

    Parameters
    ----------
    hrd_like : float
        Position between the label-0 (0.0) and label-1 (1.0) morphology prototypes.
    morphology : Morphology
        The drawn morphology.
    stain_h, stain_e : float
        Relative haematoxylin and eosin staining intensity.
    """

    hrd_like: float
    morphology: Morphology
    stain_h: float
    stain_e: float


def case_style(rng: np.random.Generator, hrd_like: float, variability: float = 1.0) -> CaseStyle:
    """Draw a case's morphology and staining.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    hrd_like : float
        0.0 = the label-0 prototype, 1.0 = the HRD-like prototype; values between mix
        them linearly (a graded phenotype, as a continuous HRD score would give).
    variability : float
        Scale of the per-case variation (0 = the prototype exactly).
    """
    if not 0.0 <= hrd_like <= 1.0:
        raise ValueError("hrd_like must be in [0, 1]")
    lo, hi = _MORPHOLOGY[0], _MORPHOLOGY[1]
    mix = {
        name: (1.0 - hrd_like) * getattr(lo, name) + hrd_like * getattr(hi, name)
        for name in Morphology.__dataclass_fields__
    }
    base = Morphology(**mix)
    v = variability

    def jitter(value: float, rel: float) -> float:
        return float(value * math.exp(rng.normal(0.0, rel * v)))

    morphology = replace(
        base,
        nuclei_per_mm2=jitter(base.nuclei_per_mm2, 0.25),
        radius_um=jitter(base.radius_um, 0.12),
        chromatin=jitter(base.chromatin, 0.10),
        lymphocytes_per_mm2=jitter(base.lymphocytes_per_mm2, 0.5),
        eosin=jitter(base.eosin, 0.15),
    )
    return CaseStyle(
        hrd_like=hrd_like,
        morphology=morphology,
        stain_h=jitter(1.0, 0.10),
        stain_e=jitter(1.0, 0.10),
    )


def _smooth_noise(
    rng: np.random.Generator, height: int, width: int, cell_px: float
) -> NDArray[np.float32]:
    """Zero-mean, unit-ish noise varying over about ``cell_px`` pixels."""
    gh = max(2, int(math.ceil(height / cell_px)) + 1)
    gw = max(2, int(math.ceil(width / cell_px)) + 1)
    grid = rng.normal(0.0, 1.0, size=(gh, gw)).astype(np.float32)
    image = Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BICUBIC)
    return np.array(image, dtype=np.float32)


def tissue_shape(
    rng: np.random.Generator, height: int, width: int, coverage: float, blob_px: float
) -> NDArray[np.bool_]:
    """Return a blobby tissue mask covering about ``coverage`` of the image.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    height, width : int
        Mask size.
    coverage : float
        Target fraction of tissue (0..1).
    blob_px : float
        Typical size of tissue fragments in pixels.
    """
    if coverage >= 1.0:
        return np.ones((height, width), dtype=bool)
    field = _smooth_noise(rng, height, width, blob_px)
    # Fade towards the borders so tissue sits on the glass, not cut by the image edge.
    yy = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    field -= 1.5 * np.maximum(np.abs(xx), np.abs(yy)) ** 4
    threshold = float(np.quantile(field, 1.0 - coverage))
    return np.asarray(field > threshold)


def _draw_nuclei(
    rng: np.random.Generator,
    density: NDArray[np.float32],
    mask: NDArray[np.bool_],
    count: int,
    radius_px: float,
    radius_sd_px: float,
    elongation: float,
    intensity: float,
) -> None:
    from skimage.draw import ellipse

    height, width = density.shape
    if count <= 0:
        return
    ys = rng.uniform(0, height, size=count)
    xs = rng.uniform(0, width, size=count)
    radii = np.clip(rng.normal(radius_px, radius_sd_px, size=count), 1.0, None)
    ratios = np.clip(rng.normal(elongation, 0.15, size=count), 1.0, 2.5)
    angles = rng.uniform(0, math.pi, size=count)
    amps = intensity * rng.uniform(0.8, 1.2, size=count)
    inside = mask[ys.astype(int).clip(0, height - 1), xs.astype(int).clip(0, width - 1)]
    for y, x, r, q, a, amp in zip(
        ys[inside],
        xs[inside],
        radii[inside],
        ratios[inside],
        angles[inside],
        amps[inside],
        strict=True,
    ):
        rr, cc = ellipse(y, x, r * q, r / q, shape=(height, width), rotation=a)  # type: ignore[no-untyped-call]
        np.maximum.at(density, (rr, cc), np.float32(amp))


def render_tissue(
    rng: np.random.Generator,
    height: int,
    width: int,
    mpp: float,
    style: CaseStyle,
    mask: NDArray[np.bool_] | None = None,
) -> NDArray[np.uint8]:
    """Render an H&E-like RGB image.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    height, width : int
        Image size in pixels.
    mpp : float
        Pixel spacing (um/px); morphology is specified in micrometres.
    style : CaseStyle
        The case's morphology and staining.
    mask : numpy.ndarray, optional
        Where tissue is; everywhere when omitted.

    Returns
    -------
    numpy.ndarray
        ``(height, width, 3)`` uint8 RGB.
    """
    from scipy.ndimage import gaussian_filter

    if mask is None:
        mask = np.ones((height, width), dtype=bool)
    m = style.morphology
    area_mm2 = float(mask.sum()) * (mpp / 1000.0) ** 2
    px_per_um = 1.0 / mpp

    hema = np.zeros((height, width), dtype=np.float32)
    _draw_nuclei(
        rng,
        hema,
        mask,
        int(rng.poisson(m.nuclei_per_mm2 * area_mm2 / max(mask.mean(), 1e-6))),
        m.radius_um * px_per_um,
        m.radius_sd_um * px_per_um,
        m.elongation,
        m.chromatin,
    )
    _draw_nuclei(
        rng,
        hema,
        mask,
        int(rng.poisson(m.lymphocytes_per_mm2 * area_mm2 / max(mask.mean(), 1e-6))),
        2.6 * px_per_um,
        0.25 * px_per_um,
        1.05,
        1.5,
    )
    chromatin = 1.0 + 0.25 * _smooth_noise(rng, height, width, 1.5 * px_per_um)
    hema *= np.clip(chromatin, 0.4, 1.6)

    fibres = _smooth_noise(rng, height, width, 6.0 * px_per_um)
    regional = _smooth_noise(rng, height, width, 80.0 * px_per_um)
    eosin = m.eosin * (1.0 + 0.25 * fibres + 0.2 * regional)
    eosin = np.clip(eosin, 0.05, None) * (1.0 - 0.7 * np.clip(hema, 0.0, 1.0))
    tissue = mask.astype(np.float32)
    hema *= tissue
    eosin *= tissue

    od = (
        hema[..., None] * (_H_VECTOR * 1.35 * style.stain_h)
        + eosin[..., None] * (_E_VECTOR * 0.75 * style.stain_e)
        + _BACKGROUND_OD
    )
    od = gaussian_filter(od, sigma=(0.6, 0.6, 0.0))
    od += rng.normal(0.0, 0.012, size=od.shape).astype(np.float32)
    rgb = 255.0 * np.exp(-od)
    return np.asarray(np.clip(np.rint(rgb), 0, 255), dtype=np.uint8)
