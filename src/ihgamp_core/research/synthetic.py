"""A synthetic cohort at embedding level, with known ground truth.

Thousands of patients with 512-d tile embeddings in seconds, so training and the full
evaluation run on a CPU in tests. Per patient:

* a latent HRD propensity ``z ~ N(0, 1)``; continuous score ``s = 33 + 10 (z - q_t)``
  where ``q_t`` sets cancer type ``t``'s prevalence (``label = s >= 33``);
* case embedding ``mu + signal_t * z * u + type offset + site shift + noise``: ``u`` is
  a fixed unit "HRD morphology" direction, ``signal_t`` the type's signal strength
  (0 = no morphological signal, like the squamous types in the paper), the site shift a
  small tissue-source-site batch effect;
* ``tiles_per_case`` tile embeddings scattered around the case embedding;
* every case is then rescaled (tiles with it) to a norm near the mean embedding's norm
  (relative spread 3 %, plus a 1 % per-site offset), as real case embeddings sit in a
  narrow norm band: the trained head's embedding-norm QC range then accepts real slides
  of the same backbone.

The default types include a strong, a moderate and a no-signal type, so a correct
leave-one-cancer-type-out evaluation finds AUROC near 0.5 for the no-signal type.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import norm

from ..embed.backbone import BackboneIdentity
from ..params import Preset, get_preset
from .store import EmbeddingStore

__all__ = ["DEFAULT_TYPES", "CancerTypeSpec", "synthetic_backbone", "write_synthetic_cohort"]


@dataclass(frozen=True)
class CancerTypeSpec:
    """One cancer type of the synthetic cohort."""

    name: str
    n: int
    prevalence: float
    signal: float


DEFAULT_TYPES = (
    CancerTypeSpec("OV", 700, 0.45, 2.0),
    CancerTypeSpec("BRCA", 900, 0.25, 1.2),
    CancerTypeSpec("PRAD", 500, 0.15, 2.5),
    CancerTypeSpec("LUAD", 600, 0.20, 0.8),
    CancerTypeSpec("LUSC", 500, 0.35, 0.0),
)


def synthetic_backbone(dim: int = 512, seed: int = 0) -> BackboneIdentity:
    """The identity recorded for synthetic embeddings."""
    return BackboneIdentity("synthetic/gaussian", f"random-init-seed-{seed}", dim)


def write_synthetic_cohort(
    out: Path,
    types: Sequence[CancerTypeSpec] = DEFAULT_TYPES,
    dim: int = 512,
    n_sites: int = 40,
    site_shift: float = 0.02,
    tiles_per_case: int = 4,
    seed: int = 0,
    preset: Preset | None = None,
    backbone: BackboneIdentity | None = None,
    center: np.ndarray | None = None,
) -> tuple[Path, Path]:
    """Write embeddings and a manifest; return ``(manifest, embeddings_dir)``.

    Parameters
    ----------
    out : Path
        Output folder (``manifest.csv`` and ``embeddings/`` are written inside).
    types : sequence of CancerTypeSpec
        Cancer types with their size, prevalence and signal strength.
    dim : int
        Embedding dimension.
    n_sites : int
        Tissue source sites (assigned at random).
    site_shift : float
        Size of each site's embedding offset relative to the mean embedding's norm.
    tiles_per_case : int
        Tile embeddings per case.
    seed : int
        Random seed.
    preset : Preset, optional
        Preset recorded with the embeddings (``paper``).
    backbone : BackboneIdentity, optional
        Identity recorded with the embeddings (default: ``synthetic/gaussian``); give a real
        backbone's identity together with ``center`` to build a cohort around real
        embeddings of that backbone.
    center : numpy.ndarray, optional
        Mean case embedding (default: random with the paper's mean norm, 13.5).
    """
    rng = np.random.default_rng(seed)
    preset = preset or get_preset("paper")
    backbone = backbone or synthetic_backbone(dim, seed)
    store = EmbeddingStore(out / "embeddings")
    mu = rng.normal(0.0, 1.0, dim)
    mu *= 13.5 / np.linalg.norm(mu)  # the paper's mean patient-embedding norm
    if center is not None:
        mu = np.asarray(center, dtype=np.float64)
    scale = float(np.linalg.norm(mu)) / 13.5  # noise and signal scale with the norm
    direction = rng.normal(0.0, 1.0, dim)
    direction /= np.linalg.norm(direction)
    sites = rng.normal(0.0, 1.0, (n_sites, dim))
    sites *= site_shift * float(np.linalg.norm(mu)) / np.linalg.norm(sites, axis=1, keepdims=True)
    site_norm = 1.0 + rng.normal(0.0, 0.01, n_sites)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case_id", "slides", "score", "cancer_type", "tss"])
        for spec in types:
            offset = rng.normal(0.0, 0.15 * scale, dim)
            q = float(norm.ppf(1.0 - spec.prevalence))
            for i in range(spec.n):
                z = float(rng.normal())
                score = 33.0 + 10.0 * (z - q) + float(rng.normal(0.0, 2.0))
                site = int(rng.integers(n_sites))
                case = mu + (spec.signal * z * 0.5 * scale) * direction + offset + sites[site]
                case = case + rng.normal(0.0, 0.35 * scale, dim)
                tiles = case + rng.normal(0.0, 0.5 * scale, (tiles_per_case, dim))
                target = float(np.linalg.norm(mu)) * site_norm[site] * (1 + rng.normal(0, 0.03))
                tiles *= target / float(np.linalg.norm(tiles.mean(axis=0)))
                case_id = f"{spec.name}-{i:05d}"
                slide = f"synthetic/{case_id}/slide-1"  # a name only: no slide file exists
                store.write_features(
                    case_id,
                    slide,  # the manifest entry is the slide's key
                    tiles.astype(np.float32),
                    backbone,
                    preset,
                    source=str((out / slide).resolve()),
                )
                writer.writerow([case_id, slide, f"{score:.3f}", spec.name, f"TSS{site:03d}"])
    return manifest, out / "embeddings"
