"""The HER2 result: one frozen dataclass, its JSON form, and the case-level rule.

Case-level score from tile classes (:func:`aggregate`), after ASCO/CAP's "> 10 % of
tumour cells" rule: the case gets the highest score ``k`` such that more than
``min_fraction`` (10 %) of the scored tiles are classified ``k`` or higher; 0 otherwise.
The per-class probabilities reported are the mean of the tiles' softmax outputs.

Limits stated in every output: tiles are all tissue tiles (no tumour segmentation), and
the model sees protein expression (or its H&E correlate), not ERBB2 amplification, so
it cannot tell HER2-low 2+ (no amplification) from 2+ with amplification.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..analysis.contract import ModalityPath, SlideRole
from ..slide.base import SlideInfo
from ..tiling import TileGrid
from .config import CLASS_LABELS, N_CLASSES
from .register import Registration

__all__ = [
    "RESULT_SCHEMA",
    "Her2Call",
    "Her2ModelIdentity",
    "Her2QCFlag",
    "Her2Result",
    "Her2Score",
    "Her2SlideResult",
    "Her2Tiles",
    "aggregate",
    "her2_result_from_dict",
    "her2_result_to_dict",
    "her2_result_to_json",
]

RESULT_SCHEMA = "ihgamp-her2-result/1"


class Her2Score(StrEnum):
    """HER2 IHC score (ASCO/CAP)."""

    ZERO = "0"
    ONE = "1+"
    TWO = "2+"
    THREE = "3+"

    @property
    def class_index(self) -> int:
        """Class index 0..3."""
        return CLASS_LABELS.index(str(self))


class Her2Call(StrEnum):
    """The case-level call."""

    SCORE_0 = "her2-0"
    SCORE_1 = "her2-1+"
    SCORE_2 = "her2-2+"
    SCORE_3 = "her2-3+"
    NO_CALL = "no-call"


class Her2QCFlag(StrEnum):
    """Reasons a HER2 result must not be used as a call."""

    NO_USABLE_LEVEL = "no-usable-level"
    """No level fine enough for the model's input spacing."""
    TOO_FEW_TILES = "too-few-tiles"
    """Fewer scored tiles than the configured minimum."""


@dataclass(frozen=True, eq=False)
class Her2Tiles(TileGrid):
    """Scored tiles (:class:`TileGrid`) on the reference slide.

    The reference slide is the H&E, or the IHC on the IHC-only path.

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(N, 4)`` class probabilities.
    """

    probabilities: NDArray[np.float64]

    @property
    def classes(self) -> NDArray[np.int64]:
        """Most probable class of each tile."""
        return np.asarray(self.probabilities.argmax(axis=1), dtype=np.int64)


@dataclass(frozen=True)
class Her2SlideResult:
    """One slide of the case and what was read from it."""

    role: SlideRole
    info: SlideInfo
    width: int
    height: int
    base_mpp: float
    read_level: int | None
    tile_mpp: float | None
    tissue_fraction: float


@dataclass(frozen=True)
class Her2ModelIdentity:
    """Which HER2 model produced a result."""

    name: str
    version: str
    config: str
    weights: str
    use_cam: bool
    demo: bool
    intended_use: str
    display_name: str

    @property
    def key(self) -> str:
        """Name, version, weights, configuration."""
        return f"{self.name}|{self.version}|{self.weights}|{self.config}"


@dataclass(frozen=True)
class Her2Result:
    """The HER2 estimate for one tissue block.

    Parameters
    ----------
    case_id : str
        Identifier written into the result (not a patient identifier).
    path : ModalityPath
        ``dual``, ``he-only-synthesised-ihc`` or ``ihc-only``.
    score : Her2Score or None
        Case-level score; None when a QC flag is raised.
    probabilities : tuple of float or None
        Mean tile probability of 0, 1+, 2+, 3+.
    tile_fractions : tuple of float or None
        Fraction of tiles classified 0, 1+, 2+, 3+.
    min_fraction : float
        The fraction the case rule uses (0.10).
    n_tiles : int
        Scored tiles.
    unpaired_tiles : int
        H&E tiles whose IHC counterpart is not on IHC tissue (dual path; not scored).
    qc_flags : tuple of Her2QCFlag
        QC flags.
    slides : tuple of Her2SlideResult
        The slides, reference first.
    tiles : Her2Tiles or None
        Scored tiles on the reference slide.
    registration : Registration or None
        The H&E -> IHC map (dual path).
    model : Her2ModelIdentity
        The model.
    engine_version, created : str
        Provenance.
    device : str
        Where the model ran.
    seconds : float
        Wall time.
    """

    case_id: str
    path: ModalityPath
    score: Her2Score | None
    probabilities: tuple[float, ...] | None
    tile_fractions: tuple[float, ...] | None
    min_fraction: float
    n_tiles: int
    unpaired_tiles: int
    qc_flags: tuple[Her2QCFlag, ...]
    slides: tuple[Her2SlideResult, ...]
    tiles: Her2Tiles | None = field(compare=False)
    registration: Registration | None = field(compare=False)
    model: Her2ModelIdentity = field(compare=False, kw_only=True)
    engine_version: str = field(kw_only=True)
    created: str = field(kw_only=True)
    device: str = field(default="cpu", kw_only=True)
    seconds: float = field(default=0.0, kw_only=True)

    @property
    def call(self) -> Her2Call:
        """``her2-<score>`` or ``no-call``."""
        if self.score is None:
            return Her2Call.NO_CALL
        return Her2Call(f"her2-{self.score}")

    @property
    def ihc_missing(self) -> bool:
        """No IHC slide: the IHC was synthesised inside the model."""
        return self.path is ModalityPath.HE_ONLY

    @property
    def he_missing(self) -> bool:
        """No H&E slide: the H&E was synthesised inside the model."""
        return self.path is ModalityPath.IHC_ONLY

    @property
    def her2_low_range(self) -> bool:
        """Score 1+ or 2+: HER2-low if 2+ is not amplified (ISH decides, not this model)."""
        return self.score in (Her2Score.ONE, Her2Score.TWO)

    @property
    def score_probability(self) -> float | None:
        """Mean probability of the case's score."""
        if self.score is None or self.probabilities is None:
            return None
        return self.probabilities[self.score.class_index]


def aggregate(
    probabilities: NDArray[np.float64], min_fraction: float = 0.10
) -> tuple[Her2Score, tuple[float, ...], tuple[float, ...]]:
    """Case score, mean probabilities and class fractions from tile probabilities.

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(N, 4)`` tile probabilities, N >= 1.
    min_fraction : float
        More than this fraction of tiles at ``k`` or higher gives score ``k``.
    """
    if probabilities.ndim != 2 or probabilities.shape[1] != N_CLASSES or not len(probabilities):
        raise ValueError("need an (N, 4) array of tile probabilities with N >= 1")
    classes = probabilities.argmax(axis=1)
    fractions = np.bincount(classes, minlength=N_CLASSES) / len(classes)
    at_least = np.cumsum(fractions[::-1])[::-1]  # fraction of tiles with class >= k
    score = max((k for k in range(1, N_CLASSES) if at_least[k] > min_fraction), default=0)
    mean = probabilities.mean(axis=0)
    return (
        Her2Score(CLASS_LABELS[score]),
        tuple(float(v) for v in mean),
        tuple(float(v) for v in fractions),
    )


def _round(values: tuple[float, ...] | None, digits: int = 6) -> list[float] | None:
    return None if values is None else [round(v, digits) for v in values]


def her2_result_to_dict(result: Her2Result, include_tiles: bool = True) -> dict[str, Any]:
    """JSON-ready form (schema ``ihgamp-her2-result/1``)."""
    tiles = result.tiles
    m = result.model
    return {
        "schema": RESULT_SCHEMA,
        "analysis": "her2",
        "case_id": result.case_id,
        "call": str(result.call),
        "score": str(result.score) if result.score else None,
        "path": str(result.path),
        "ihc_missing": result.ihc_missing,
        "he_missing": result.he_missing,
        "her2_low_range": result.her2_low_range,
        "amplification_assessed": False,
        "probabilities": dict(zip(CLASS_LABELS, _round(result.probabilities) or [], strict=False)),
        "tile_fractions": dict(
            zip(CLASS_LABELS, _round(result.tile_fractions, 4) or [], strict=False)
        ),
        "min_fraction": result.min_fraction,
        "n_tiles": result.n_tiles,
        "unpaired_tiles": result.unpaired_tiles,
        "qc_flags": [str(f) for f in result.qc_flags],
        "registration": result.registration.to_dict() if result.registration else None,
        "slides": [
            {
                "role": str(s.role),
                **s.info.to_dict(),
                "width": s.width,
                "height": s.height,
                "base_mpp": round(s.base_mpp, 6),
                "read_level": s.read_level,
                "tile_mpp": None if s.tile_mpp is None else round(s.tile_mpp, 6),
                "tissue_fraction": round(s.tissue_fraction, 4),
            }
            for s in result.slides
        ],
        "tiles": (
            {
                **tiles.positions_to_dict(),
                "probabilities": np.round(tiles.probabilities, 5).tolist(),
            }
            if include_tiles and tiles is not None
            else None
        ),
        "model": {
            "name": m.name,
            "version": m.version,
            "config": m.config,
            "weights": m.weights,
            "use_cam": m.use_cam,
            "demo": m.demo,
            "intended_use": m.intended_use,
            "display_name": m.display_name,
        },
        "device": result.device,
        "seconds": round(result.seconds, 3),
        "engine_version": result.engine_version,
        "created": result.created,
    }


def her2_result_from_dict(data: dict[str, Any]) -> Her2Result:
    """Rebuild a result from :func:`her2_result_to_dict` output (without the registration).

    Raises
    ------
    ValueError
        If the schema is not ``ihgamp-her2-result/1`` or a field is missing.
    """
    if data.get("schema") != RESULT_SCHEMA:
        raise ValueError(f"not an {RESULT_SCHEMA} document")
    try:
        t = data.get("tiles")
        tiles = (
            Her2Tiles(
                **TileGrid.positions_from_dict(t),
                probabilities=np.asarray(t["probabilities"], dtype=np.float64).reshape(-1, 4),
            )
            if t
            else None
        )
        probabilities = data["probabilities"]
        fractions = data["tile_fractions"]
        return Her2Result(
            case_id=data["case_id"],
            path=ModalityPath(data["path"]),
            score=Her2Score(data["score"]) if data["score"] else None,
            probabilities=tuple(probabilities[c] for c in CLASS_LABELS) if probabilities else None,
            tile_fractions=tuple(fractions[c] for c in CLASS_LABELS) if fractions else None,
            min_fraction=float(data["min_fraction"]),
            n_tiles=int(data["n_tiles"]),
            unpaired_tiles=int(data["unpaired_tiles"]),
            qc_flags=tuple(Her2QCFlag(f) for f in data["qc_flags"]),
            slides=tuple(
                Her2SlideResult(
                    role=SlideRole(s["role"]),
                    info=SlideInfo.from_dict(s),
                    width=int(s["width"]),
                    height=int(s["height"]),
                    base_mpp=float(s["base_mpp"]),
                    read_level=s["read_level"],
                    tile_mpp=s["tile_mpp"],
                    tissue_fraction=float(s["tissue_fraction"]),
                )
                for s in data["slides"]
            ),
            tiles=tiles,
            registration=None,
            model=Her2ModelIdentity(**data["model"]),
            engine_version=data["engine_version"],
            created=data["created"],
            device=data.get("device", "cpu"),
            seconds=float(data.get("seconds", 0.0)),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"HER2 result document is incomplete: {exc}") from exc


def her2_result_to_json(result: Her2Result) -> str:
    """JSON text of :func:`her2_result_to_dict`."""
    return json.dumps(her2_result_to_dict(result), indent=2) + "\n"
