"""Synthetic registered H&E / HER2-IHC pairs whose staining depends on the HER2 score.

One tissue layout (tumour nests, stroma, cells) is rendered twice, as H&E and as a
HER2 immunostain, so the pair is registered pixel for pixel like the BCI patches:

* **Cells**: tumour cell centres at a density that rises with the score; every pixel
  belongs to its nearest centre (a Voronoi tessellation by Euclidean distance
  transform), cell membranes are the borders between neighbouring cells.
* **H&E**: haematoxylin nuclei whose size, pleomorphism and chromatin rise with the
  score (HER2-amplified tumours are typically of higher grade), eosin cytoplasm and
  fibrous stroma.
* **IHC**: pale haematoxylin counterstain plus DAB on the tumour cell membranes, as
  ASCO/CAP describe the scores: 0 = none (a few faint cells), 1+ = faint, incomplete;
  2+ = weak to moderate, complete; 3+ = strong, complete, thicker. Incomplete
  membranes are arcs (a random arc per cell).

Colours come from Beer-Lambert mixing of Ruifrok & Johnston's haematoxylin, eosin and
DAB optical-density vectors. Everything is drawn from a seeded PCG64 generator.

:func:`write_bci_folder` writes pairs in the BCI layout (``HE/train``, ``IHC/train``,
``HE/test``, ``IHC/test``, the score in the file name) for the training toolkit and the
tests; :func:`render_slide_pair` renders a whole H&E slide and the IHC slide of the next
section (shifted and rotated) for the WSI path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..errors import ParameterError
from ..synthetic.he import tissue_shape
from .config import CLASS_LABELS, N_CLASSES
from .data import SYNTHETIC_MARKER

__all__ = [
    "DEFAULT_PROPORTIONS",
    "Her2SlideSpec",
    "render_pair",
    "render_slide_pair",
    "write_bci_folder",
]

_H = np.array([0.650, 0.704, 0.286], dtype=np.float32)
_E = np.array([0.072, 0.990, 0.105], dtype=np.float32)
_DAB = np.array([0.268, 0.570, 0.776], dtype=np.float32)
_BACKGROUND_OD = np.array([0.03, 0.035, 0.03], dtype=np.float32)

#: Class proportions of the synthetic sets (imbalanced, as real cohorts are).
DEFAULT_PROPORTIONS: tuple[float, float, float, float] = (0.2, 0.3, 0.3, 0.2)

# Per score: (membrane DAB amplitude, its spread, fraction of stained tumour cells,
# membrane completeness (fraction of the circumference), membrane half-width in um).
_IHC = {
    0: (0.10, 0.03, 0.06, 0.35, 0.35),
    1: (0.16, 0.04, 0.75, 0.45, 0.35),
    2: (0.42, 0.08, 0.85, 0.92, 0.45),
    3: (0.95, 0.15, 0.95, 1.00, 0.75),
}


def _smooth(
    rng: np.random.Generator, height: int, width: int, cell_px: float
) -> NDArray[np.float32]:
    gh = max(2, int(math.ceil(height / cell_px)) + 1)
    gw = max(2, int(math.ceil(width / cell_px)) + 1)
    grid = rng.normal(0.0, 1.0, size=(gh, gw)).astype(np.float32)
    return np.array(
        Image.fromarray(grid, mode="F").resize((width, height), Image.Resampling.BICUBIC),
        dtype=np.float32,
    )


def _to_rgb(rng: np.random.Generator, od: NDArray[np.float32]) -> NDArray[np.uint8]:
    from scipy.ndimage import gaussian_filter

    od = gaussian_filter(od + _BACKGROUND_OD, sigma=(0.6, 0.6, 0.0))
    od += rng.normal(0.0, 0.012, size=od.shape).astype(np.float32)
    return np.asarray(np.clip(np.rint(255.0 * np.exp(-od)), 0, 255), dtype=np.uint8)


def render_pair(
    rng: np.random.Generator,
    score: int | NDArray[np.int64],
    height: int,
    width: int,
    mpp: float = 0.5,
    mask: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Render one registered H&E / HER2-IHC pair.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    score : int or numpy.ndarray
        HER2 score 0..3, or an ``(height, width)`` map of scores (heterogeneous tissue;
        each cell takes the score at its centre).
    height, width : int
        Image size in pixels.
    mpp : float
        Pixel spacing (um/px); the morphology is specified in micrometres.
    mask : numpy.ndarray, optional
        Where tissue is (everywhere when omitted); outside it the glass is white.

    Returns
    -------
    tuple of numpy.ndarray
        ``(he, ihc)``, each ``(height, width, 3)`` uint8 RGB.
    """
    from scipy.ndimage import binary_dilation, binary_erosion, distance_transform_edt

    score_map = np.broadcast_to(np.asarray(score, dtype=np.int64), (height, width))
    if score_map.min() < 0 or score_map.max() >= N_CLASSES:
        raise ParameterError("HER2 scores are 0..3")
    tissue = np.ones((height, width), dtype=bool) if mask is None else mask
    px = 1.0 / mpp
    tumour = (_smooth(rng, height, width, 45.0 * px) > -0.55) & tissue
    mean_score = float(score_map[tissue].mean()) if tissue.any() else 0.0
    density = 7000.0 + 700.0 * mean_score  # tumour cells per mm2 of tumour
    area_mm2 = height * width * (mpp / 1000.0) ** 2
    n = max(1, int(rng.poisson(density * area_mm2)))
    iy = rng.integers(0, height, n)
    ix = rng.integers(0, width, n)
    keep = tumour[iy, ix]
    iy, ix = iy[keep], ix[keep]
    if iy.size == 0:  # no tumour cell: one dummy cell keeps the arrays non-empty
        iy, ix = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
        tumour = np.zeros_like(tumour)
    cell_score = score_map[iy, ix]
    m = iy.size

    seeds = np.zeros((height, width), dtype=bool)
    seeds[iy, ix] = True
    distance, (ny, nx) = distance_transform_edt(~seeds, return_indices=True)
    distance = distance.astype(np.float32) / px  # um to the nearest centre
    index = np.zeros((height, width), dtype=np.int64)
    index[iy, ix] = np.arange(m)
    own = index[ny, nx]
    inside_cell = tumour & (distance <= 8.0)

    # Per-cell parameters.
    radius = (3.0 + 0.45 * cell_score) * np.exp(rng.normal(0, 0.10 + 0.04 * cell_score, m))
    chromatin = (0.85 + 0.13 * cell_score) * rng.uniform(0.85, 1.15, m)
    amp_mean, amp_sd, stained, completeness, half_width = (
        np.array([_IHC[int(s)][k] for s in cell_score], dtype=np.float64) for k in range(5)
    )
    stained_cell = rng.uniform(0, 1, m) < stained
    amplitude = np.clip(rng.normal(amp_mean, amp_sd), 0.0, None) * stained_cell
    phase = rng.uniform(-math.pi, math.pi, m)

    nucleus = inside_cell & (distance <= radius[own])
    boundary = np.zeros((height, width), dtype=bool)
    for dy, dx in ((0, 1), (1, 0)):
        edge = own[: height - dy, : width - dx] != own[dy:, dx:]
        boundary[: height - dy, : width - dx] |= edge
        boundary[dy:, dx:] |= edge
    outer = inside_cell & ~binary_erosion(inside_cell)
    core = (boundary & inside_cell) | outer
    thick = binary_dilation(core, iterations=max(1, round(0.6 * px))) & inside_cell
    angle = np.arctan2(np.arange(height)[:, None] - ny, np.arange(width)[None, :] - nx)
    arc = np.cos(angle - phase[own]) >= 1.0 - 2.0 * completeness[own]
    membrane = (core | (thick & (half_width[own] >= 0.6))) & arc
    dab = membrane * amplitude[own]
    dab = dab + (inside_cell & ~nucleus) * (0.06 * (cell_score[own] == 3) * amplitude[own])

    grain = np.clip(1.0 + 0.25 * _smooth(rng, height, width, 1.2 * px), 0.4, 1.6)
    hema = nucleus * chromatin[own] * grain
    fibres = _smooth(rng, height, width, 5.0 * px)
    stroma = tissue & ~tumour
    stroma_nuclei = stroma & (_smooth(rng, height, width, 2.0 * px) > 2.1)
    eosin = np.where(inside_cell & ~nucleus, 0.55, 0.0) + 0.25 * (tumour & ~inside_cell)
    eosin = eosin + stroma * np.clip(0.45 + 0.2 * fibres, 0.1, None)
    eosin = eosin * tissue * rng.uniform(0.85, 1.15)
    hema = (hema + 0.9 * stroma_nuclei) * tissue

    stain_h = rng.uniform(0.9, 1.1)
    he_od = hema[..., None] * (_H * 1.35 * stain_h) + eosin[..., None] * (_E * 0.75)
    ihc_od = hema[..., None] * (_H * 0.55 * stain_h) + (dab * tissue)[..., None] * (_DAB * 1.6)
    ihc_od += (tissue * 0.15)[..., None] * _H  # light counterstain of cytoplasm and stroma
    return _to_rgb(rng, he_od.astype(np.float32)), _to_rgb(rng, ihc_od.astype(np.float32))


def _draw_scores(
    rng: np.random.Generator, n: int, proportions: Sequence[float]
) -> NDArray[np.int64]:
    p = np.asarray(proportions, dtype=np.float64)
    if p.shape != (N_CLASSES,) or (p < 0).any() or p.sum() <= 0:
        raise ParameterError("proportions must be 4 non-negative numbers")
    counts = np.floor(p / p.sum() * n).astype(int)
    counts[np.argmax(p)] += n - counts.sum()
    scores = np.repeat(np.arange(N_CLASSES), counts)
    rng.shuffle(scores)
    return scores.astype(np.int64)


def write_bci_folder(
    root: Path,
    n_train: int,
    n_test: int,
    seed: int = 0,
    size_px: int = 128,
    mpp: float = 0.5,
    proportions: Sequence[float] = DEFAULT_PROPORTIONS,
) -> Path:
    """Write synthetic pairs in the BCI layout.

    ``root/HE/{train,test}/NNNNN_{split}_{score}.png`` and the same names under
    ``root/IHC``, where ``score`` is ``0``, ``1+``, ``2+`` or ``3+``; plus
    ``ihgamp-synthetic.json`` recording the seed and the physical patch size.

    Parameters
    ----------
    root : Path
        Output folder (created).
    n_train, n_test : int
        Pairs per split.
    seed : int
        Random seed (the same seed writes the same pixels).
    size_px : int
        Patch side in pixels.
    mpp : float
        Pixel spacing of the patches (um/px); a patch covers ``size_px * mpp`` um.
    proportions : sequence of float
        Class proportions (0, 1+, 2+, 3+).

    Returns
    -------
    Path
        ``root``.
    """
    if n_train < 1 or n_test < 1 or size_px < 16:
        raise ParameterError("need at least one pair per split and patches of 16 px or more")
    root = Path(root)
    rng = np.random.default_rng(seed)
    index = 0
    for split, count in (("train", n_train), ("test", n_test)):
        for modality in ("HE", "IHC"):
            (root / modality / split).mkdir(parents=True, exist_ok=True)
        for score in _draw_scores(rng, count, proportions):
            he, ihc = render_pair(rng, int(score), size_px, size_px, mpp)
            name = f"{index:05d}_{split}_{CLASS_LABELS[int(score)]}.png"
            Image.fromarray(he).save(root / "HE" / split / name)
            Image.fromarray(ihc).save(root / "IHC" / split / name)
            index += 1
    marker = {"generator": "ihgamp-her2-synthetic/1", "seed": seed, "patch_um": size_px * mpp}
    (root / SYNTHETIC_MARKER).write_text(json.dumps(marker) + "\n")
    return root


@dataclass(frozen=True)
class Her2SlideSpec:
    """A synthetic H&E slide and the HER2 IHC slide of the next section.

    Parameters
    ----------
    name : str
        Name (file stems).
    seed : int
        Random seed.
    score : int
        The case's HER2 score (0..3); see ``heterogeneity``.
    width_um, height_um : float
        Scanned area.
    base_mpp : float
        Level-0 pixel spacing.
    coverage : float
        Approximate tissue fraction.
    heterogeneity : float
        Fraction of the tissue (in smooth regions) one score lower; the case's score is
        still ``score`` by the > 10 % rule.
    ihc_shift_um : tuple of float
        Where the IHC section lies relative to the H&E section (x, y).
    ihc_rotation_deg : float
        Rotation of the IHC section (counter-clockwise on screen).
    """

    name: str
    seed: int
    score: int
    width_um: float = 1024.0
    height_um: float = 768.0
    base_mpp: float = 0.5
    coverage: float = 0.5
    heterogeneity: float = 0.15
    ihc_shift_um: tuple[float, float] = (24.0, -16.0)
    ihc_rotation_deg: float = 3.0

    def __post_init__(self) -> None:
        if not 0 <= self.score < N_CLASSES:
            raise ParameterError("score must be 0..3")
        if not 0.0 <= self.heterogeneity < 0.5:
            raise ParameterError("heterogeneity must be in [0, 0.5)")

    @property
    def size_px(self) -> tuple[int, int]:
        """Level-0 ``(width, height)``."""
        return round(self.width_um / self.base_mpp), round(self.height_um / self.base_mpp)


def render_slide_pair(spec: Her2SlideSpec) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Render level 0 of the H&E slide and of the IHC slide of ``spec``.

    Both sections show the same tissue; the IHC image is the block rendered as IHC,
    rotated by ``ihc_rotation_deg`` about the image centre and shifted by
    ``ihc_shift_um``, as the next section lands on its slide.
    """
    rng = np.random.default_rng(spec.seed)
    width, height = spec.size_px
    mask = tissue_shape(rng, height, width, spec.coverage, blob_px=300.0 / spec.base_mpp)
    scores = np.full((height, width), spec.score, dtype=np.int64)
    if spec.heterogeneity > 0 and spec.score > 0:
        field = _smooth(rng, height, width, 120.0 / spec.base_mpp)
        cut = float(np.quantile(field[mask], 1.0 - spec.heterogeneity)) if mask.any() else 0.0
        scores[field > cut] = spec.score - 1
    he, ihc = render_pair(rng, scores, height, width, spec.base_mpp, mask)
    dx, dy = (round(v / spec.base_mpp) for v in spec.ihc_shift_um)
    moved = Image.fromarray(ihc).rotate(
        spec.ihc_rotation_deg,
        resample=Image.Resampling.BILINEAR,
        translate=(dx, dy),
        fillcolor=(255, 255, 255),
    )
    return he, np.asarray(moved)
