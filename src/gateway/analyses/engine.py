"""The ``[model]`` engine: the backbone + head a worker loads once, HRD's model.

The registry's entries with ``uses_engine`` (HRD) are built on it (:class:`LoadContext`'s
``engine``); the rest of the gateway holds it as an opaque resource (loaded at start-up,
its identity on the status page, its key for the auto-pull). Finding and loading the
model files an operator points to, or the DEMO head.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ihgamp_core.embed import OpenClipBackbone, resolve_device
from ihgamp_core.embed.openclip import Precision
from ihgamp_core.errors import ArtifactError
from ihgamp_core.head import HeadArtifact, load_head
from ihgamp_core.hrd.engine import Engine, ScoringOptions
from ihgamp_core.hrd.result import ModelIdentity

from ..config.runtime import ModelSettings

__all__ = [
    "DEMO_HEAD_ENV",
    "Engine",
    "ModelIdentity",
    "ScoringOptions",
    "model_key",
    "scoring_options",
    "demo_head_path",
    "load_engine",
    "repo_root",
    "target_max_mpp",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the demo head folder (overrides the repository copy).
DEMO_HEAD_ENV = "IHGAMP_DEMO_HEAD"


def repo_root() -> Path:
    """Return the source checkout this package runs from (``src/gateway`` -> root)."""
    return Path(__file__).resolve().parents[3]


def demo_head_path() -> Path:
    """Return where the shipped DEMO head lives.

    Raises
    ------
    ArtifactError
        If it cannot be found (e.g. a wheel install without the repository).
    """
    configured = os.environ.get(DEMO_HEAD_ENV)
    path = Path(configured) if configured else repo_root() / "sample_data" / "demo_head"
    if not (path / "head.json").is_file():
        raise ArtifactError(
            f"no head given and the demo head is not at {path}; pass --head HEAD_DIR or set "
            f"{DEMO_HEAD_ENV} to the sample_data/demo_head folder of the repository"
        )
    return path


def load_engine(
    head: Path | None = None,
    backbone_checkpoint: Path | None = None,
    device: str = "auto",
    precision: Precision = "auto",
) -> Engine:
    """Load backbone and head and check that they belong together.

    Parameters
    ----------
    head : Path or None
        Head artifact folder; ``None`` uses the DEMO head.
    backbone_checkpoint : Path or None
        OpenCLIP checkpoint; ``None`` uses the head's seeded random initialisation,
        which only the DEMO head is trained on.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    precision : str
        ``auto`` (fp16 on CUDA, fp32 on the CPU), ``fp32``, ``fp16``, ``bf16`` or
        ``int8`` (CPU only).

    Raises
    ------
    ArtifactError, CheckpointError, BackboneMismatchError
        With a message saying which file to pass.
    """
    resolve_device(device)  # fail fast, before any file is read
    head_path = head if head is not None else demo_head_path()
    artifact: HeadArtifact = load_head(head_path)
    seed = 0
    weights = artifact.metadata.backbone.weights
    if backbone_checkpoint is None and weights.startswith("random-init-seed-"):
        seed = int(weights.rsplit("-", 1)[-1])
    model_name = artifact.metadata.backbone.architecture.split("/", 1)[-1]
    backbone = OpenClipBackbone(
        model_name=model_name,
        checkpoint=backbone_checkpoint,
        seed=seed,
        device=device,
        precision=precision,
    )
    engine = Engine(backbone, artifact)
    logger.info(
        "model loaded",
        extra={
            "head": artifact.metadata.display_name,
            "backbone": backbone.identity.describe(),
            "device": backbone.device,
            "precision": backbone.precision,
        },
    )
    return engine


def target_max_mpp(head: Path | None) -> float | None:
    """Coarsest slide spacing the head can score (None: any spacing).

    Parameters
    ----------
    head : Path or None
        Head artifact folder; ``None`` means the DEMO head.
    """
    artifact = load_head(head or demo_head_path())
    tiling = artifact.metadata.preset.tiling
    if tiling.target_mpp is None:
        return None
    return tiling.target_mpp * (1.0 + tiling.mpp_tolerance) + 1e-9  # as choose_level


def model_key(engine: Engine) -> str:
    """Identify head + backbone, to know whether a study was scored with this model."""
    return engine.model.key[:160]


def scoring_options(settings: ModelSettings) -> ScoringOptions:
    """The engine's run-time options from ``[model]``."""
    return ScoringOptions(
        max_tiles=settings.max_tiles,
        min_tiles=settings.min_tiles,
        batch_size=settings.batch_size,
        workers=settings.readers,
        path=settings.pipeline,
    )
