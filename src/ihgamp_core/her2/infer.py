"""Scoring HER2 on whole-slide images: tiles -> model -> case score.

1. The reference slide is the H&E (the IHC on the IHC-only path). Its tiles are planned
   with the engine's tiler: non-overlapping tiles of the model's ``tile_um`` read at
   ``tile_um / input_px`` um/px, >= 60 % tissue, at most ``max_tiles``, chosen
   deterministically (:func:`~ihgamp_core.tiling.plan_tiles`).
2. Dual path: the IHC slide is registered to the H&E slide
   (:func:`~ihgamp_core.her2.register.register_slides`; a poor tissue match refuses the
   pair) and each H&E tile gets the IHC tile at the mapped position, rotated into the
   H&E tile's frame. H&E tiles whose counterpart is off the IHC tissue are not scored
   (counted as ``unpaired_tiles``).
3. Batches go through :meth:`Her2Model.predict` along the path; on the single-modality
   paths the missing image is synthesised inside the model and never leaves it.
4. :func:`~ihgamp_core.her2.result.aggregate` turns tile probabilities into the case
   score (the > 10 % rule) and mean probabilities.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

from .. import __version__
from ..analysis.contract import ModalityPath, SlideRole
from ..embed.extract import read_planned_tile
from ..errors import NoUsableLevelError, ParameterError
from ..params import TilingParams
from ..slide.base import Slide
from ..tiling import TilePlan, plan_tiles
from .data import to_tensor
from .model import Her2Model
from .register import Registration, read_ihc_patch, register_slides
from .result import (
    Her2ModelIdentity,
    Her2QCFlag,
    Her2Result,
    Her2SlideResult,
    Her2Tiles,
    aggregate,
)

__all__ = ["Her2Options", "model_identity", "score_her2"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Her2Options:
    """Run-time options of HER2 scoring (they do not change the model).

    Parameters
    ----------
    max_tiles : int
        Per-slide tile cap.
    min_tiles : int
        Fewer scored tiles raise ``too-few-tiles``.
    batch_size : int
        Tiles per forward pass.
    min_fraction : float
        The case rule's fraction (ASCO/CAP: > 10 % of tumour cells).
    min_iou : float
        Tissue overlap below which an H&E/IHC pair is refused.
    mask_um : float
        Resolution of the registration masks.
    max_angle_deg : float
        Largest rotation between sections searched for.
    """

    max_tiles: int = 2000
    min_tiles: int = 16
    batch_size: int = 64
    min_fraction: float = 0.10
    min_iou: float = 0.5
    mask_um: float = 16.0
    max_angle_deg: float = 20.0

    def __post_init__(self) -> None:
        if self.max_tiles < 1 or self.min_tiles < 1 or self.batch_size < 1:
            raise ParameterError("max_tiles, min_tiles and batch_size must be at least 1")
        if not 0.0 <= self.min_fraction < 1.0 or not 0.0 < self.min_iou <= 1.0:
            raise ParameterError("min_fraction must be in [0, 1) and min_iou in (0, 1]")
        if self.mask_um <= 0 or not 0 <= self.max_angle_deg <= 90:
            raise ParameterError("mask_um must be > 0 and max_angle_deg in 0..90")


def model_identity(model: Her2Model) -> Her2ModelIdentity:
    """The identity a result records."""
    info = model.info
    return Her2ModelIdentity(
        name=info.name,
        version=info.version,
        config=info.config.name,
        weights=model.weights,
        use_cam=info.use_cam,
        demo=info.demo,
        intended_use=info.intended_use,
        display_name=info.display_name,
    )


def _path(he: Slide | None, ihc: Slide | None) -> ModalityPath:
    if he is not None and ihc is not None:
        return ModalityPath.DUAL
    if he is not None:
        return ModalityPath.HE_ONLY
    if ihc is not None:
        return ModalityPath.IHC_ONLY
    raise ParameterError("HER2 scoring needs an H&E slide, an IHC slide, or both")


def _slide_result(slide: Slide, role: SlideRole, plan: TilePlan | None) -> Her2SlideResult:
    base = slide.levels[0]
    return Her2SlideResult(
        role=role,
        info=slide.info,
        width=base.width,
        height=base.height,
        base_mpp=slide.base_mpp,
        read_level=plan.choice.level if plan else None,
        tile_mpp=plan.choice.effective_mpp if plan else None,
        tissue_fraction=plan.tissue_fraction if plan else 0.0,
    )


def score_her2(
    model: Her2Model,
    he: Slide | None,
    ihc: Slide | None,
    case_id: str,
    options: Her2Options | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Her2Result:
    """Score one tissue block (see the module docstring).

    Parameters
    ----------
    model : Her2Model
        The loaded model.
    he, ihc : Slide or None
        The block's H&E and HER2 IHC slides; at least one.
    case_id : str
        Written into the result (not a patient identifier).
    options : Her2Options, optional
        Run-time options.
    progress : callable, optional
        Called with ``(tiles_done, tiles_total)`` after each batch.

    Raises
    ------
    PairingError
        If the H&E and IHC tissue do not match (dual path).
    SlideReadError
        If pixels cannot be read.
    """
    options = options or Her2Options()
    started = time.perf_counter()
    path = _path(he, ihc)
    config = model.config
    reference = he if he is not None else ihc
    assert reference is not None  # noqa: S101 - _path checked it
    role = SlideRole.HE if he is not None else SlideRole.IHC
    registration: Registration | None = None
    if path is ModalityPath.DUAL:
        assert he is not None and ihc is not None  # noqa: S101 - dual means both
        registration = register_slides(
            he, ihc, options.mask_um, options.min_iou, options.max_angle_deg
        )
    tiling = TilingParams(
        tile_px=config.input_px,
        target_mpp=config.tile_mpp,
        stride_px=config.input_px,
        max_tiles=options.max_tiles,
    )
    plan: TilePlan | None
    try:
        plan = plan_tiles(reference, tiling)
    except NoUsableLevelError as exc:
        logger.warning(
            "slide has no usable level", extra={"slide": reference.info.source, "why": str(exc)}
        )
        plan = None
    slides = [_slide_result(reference, role, plan)]
    if path is ModalityPath.DUAL:
        assert ihc is not None  # noqa: S101
        slides.append(_slide_result(ihc, SlideRole.IHC, None))

    flags: list[Her2QCFlag] = []
    keep = np.zeros(0, dtype=bool)
    probabilities = np.zeros((0, 4), dtype=np.float64)
    tiles: Her2Tiles | None = None
    unpaired = 0
    if plan is None:
        flags.append(Her2QCFlag.NO_USABLE_LEVEL)
    else:
        x_um, y_um = plan.um_xy()
        size_um = plan.tile_level0_px * plan.base_mpp
        keep = np.ones(plan.n_tiles, dtype=bool)
        centres: NDArray[np.float64] | None = None
        if registration is not None:
            centres = registration.to_ihc(y_um + size_um / 2, x_um + size_um / 2)
            keep = registration.on_ihc_tissue(centres)
            unpaired = int((~keep).sum())
        indices = np.flatnonzero(keep)
        probabilities = _predict(
            model, reference, ihc if path is ModalityPath.DUAL else None, plan, indices,
            centres, registration, path, options.batch_size, progress,
        )  # fmt: skip
        x0, y0 = plan.level0_xy()
        tiles = Her2Tiles(
            x=x0[indices],
            y=y0[indices],
            size=plan.tile_level0_px,
            x_um=x_um[indices],
            y_um=y_um[indices],
            size_um=size_um,
            probabilities=probabilities,
        )
    if len(probabilities) < options.min_tiles:
        flags.append(Her2QCFlag.TOO_FEW_TILES)
    score = mean = fractions = None
    if len(probabilities):
        case_score, mean, fractions = aggregate(probabilities, options.min_fraction)
        score = None if flags else case_score
    result = Her2Result(
        case_id=case_id,
        path=path,
        score=score,
        probabilities=mean,
        tile_fractions=fractions,
        min_fraction=options.min_fraction,
        n_tiles=len(probabilities),
        unpaired_tiles=unpaired,
        qc_flags=tuple(flags),
        slides=tuple(slides),
        tiles=tiles,
        registration=registration,
        model=model_identity(model),
        engine_version=__version__,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        device=str(model.device),
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "HER2 scored",
        extra={
            "path": str(path),
            "call": str(result.call),
            "tiles": result.n_tiles,
            "qc_flags": [str(f) for f in flags],
            "seconds": round(result.seconds, 2),
        },
    )
    return result


def _predict(
    model: Her2Model,
    reference: Slide,
    ihc: Slide | None,
    plan: TilePlan,
    indices: NDArray[np.int64],
    centres: NDArray[np.float64] | None,
    registration: Registration | None,
    path: ModalityPath,
    batch_size: int,
    progress: Callable[[int, int], None] | None,
) -> NDArray[np.float64]:
    config = model.config
    device = model.device
    out: list[NDArray[np.float64]] = []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        first = torch.stack([to_tensor(read_planned_tile(reference, plan, int(i))) for i in chunk])
        second = None
        if ihc is not None and centres is not None and registration is not None:
            second = torch.stack(
                [
                    to_tensor(
                        read_ihc_patch(
                            ihc, registration, centres[i], config.input_px, config.tile_mpp
                        )
                    )
                    for i in chunk
                ]
            ).to(device)
        first = first.to(device)
        if path is ModalityPath.IHC_ONLY:
            probs = model.predict(None, first, path)
        else:
            probs = model.predict(first, second, path)
        out.append(probs.double().cpu().numpy())
        if progress is not None:
            progress(min(start + batch_size, len(indices)), len(indices))
    return np.concatenate(out) if out else np.zeros((0, 4), dtype=np.float64)
