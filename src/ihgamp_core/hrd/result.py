"""The case result: one frozen dataclass, and its JSON serialiser.

Everything downstream (the CLI table, the gateway's outbox, the DICOM SR, the FHIR
Observation, the status page) is a view of :class:`CaseResult`. No patient data is in
it: slides are named by path and DICOM UIDs only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..embed.backbone import BackboneIdentity
from ..slide.base import SlideInfo
from ..tiling import TileGrid

__all__ = [
    "RESULT_SCHEMA",
    "Call",
    "CaseResult",
    "ModelIdentity",
    "QCFlag",
    "Runtime",
    "SlideResult",
    "TileScores",
    "Timings",
    "result_from_dict",
    "result_to_dict",
    "result_to_json",
]

RESULT_SCHEMA = "ihgamp-result/1"


class Call(StrEnum):
    """The case-level call."""

    HRD_LIKELY = "hrd-likely"
    HRD_UNLIKELY = "hrd-unlikely"
    NO_CALL = "no-call"


class QCFlag(StrEnum):
    """Reasons a result must not be used as a call."""

    NO_USABLE_LEVEL = "no-usable-level"
    """A slide has no level at or finer than the target spacing (no 20x equivalent)."""
    TOO_FEW_TILES = "too-few-tiles"
    """Fewer tissue tiles than the configured minimum."""
    EMBEDDING_NORM_OUT_OF_RANGE = "embedding-norm-out-of-range"
    """The case-mean embedding norm lies outside the head's reference range."""


@dataclass(frozen=True, eq=False)
class TileScores(TileGrid):
    """Where each embedded tile lies (:class:`TileGrid`) and the head's score for it.

    Parameters
    ----------
    coverage : numpy.ndarray
        Tissue fraction of each tile.
    score : numpy.ndarray
        Continuous head score of each tile (the linear head applied to the tile).
    """

    coverage: NDArray[np.float32]
    score: NDArray[np.float64]


@dataclass(frozen=True)
class SlideResult:
    """Per-slide outcome of tiling and embedding."""

    info: SlideInfo
    width: int
    height: int
    base_mpp: float
    read_level: int | None
    read_level_mpp: float | None
    tile_mpp: float | None
    resampled: bool
    grid_tiles: int
    tissue_tiles: int
    tiles_used: int
    tissue_fraction: float
    mean_embedding_norm: float | None
    qc_flags: tuple[QCFlag, ...] = ()
    tiles: TileScores | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ModelIdentity:
    """Which model produced a result, with its intended-use statement."""

    head_name: str
    head_version: str
    endpoint: str
    backbone: BackboneIdentity
    preset: str
    demo: bool
    intended_use: str
    display_name: str

    @property
    def key(self) -> str:
        """Head, version, backbone weights and preset: which model produced a result."""
        return f"{self.head_name}|{self.head_version}|{self.backbone.weights}|{self.preset}"


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each stage."""

    tiling_s: float = 0.0
    embedding_s: float = 0.0
    head_s: float = 0.0
    total_s: float = 0.0


@dataclass(frozen=True)
class Runtime:
    """How the embeddings were computed: device, arithmetic, pipeline and batch size.

    Same model, different arithmetic: ``int8`` approximates ``fp32`` within the bound
    in ``docs/benchmarks.md``, so a result says which one produced it.
    """

    device: str = "cpu"
    precision: str = "fp32"
    pipeline: str = "fast"
    batch_size: int = 0


@dataclass(frozen=True)
class CaseResult:
    """The HRD estimate for one case (patient), over all of its slides."""

    case_id: str
    slides: tuple[SlideResult, ...]
    n_tiles: int
    score: float | None
    probability: float | None
    threshold: float
    call: Call
    qc_flags: tuple[QCFlag, ...]
    model: ModelIdentity
    tiling: dict[str, Any]
    case_embedding_norm: float | None
    timings: Timings
    engine_version: str
    created: str
    runtime: Runtime = Runtime()


def _num(value: float | None, digits: int = 6) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def _tiles_to_dict(tiles: TileScores) -> dict[str, Any]:
    return {
        **tiles.positions_to_dict(),
        "coverage": np.round(tiles.coverage.astype(np.float64), 4).tolist(),
        "score": np.round(tiles.score, 6).tolist(),
    }


def _tiles_from_dict(data: dict[str, Any]) -> TileScores:
    return TileScores(
        **TileGrid.positions_from_dict(data),
        coverage=np.asarray(data["coverage"], dtype=np.float32),
        score=np.asarray(data["score"], dtype=np.float64),
    )


def result_to_dict(result: CaseResult, include_tiles: bool = True) -> dict[str, Any]:
    """Return the JSON-ready form of a result (schema ``ihgamp-result/1``).

    Parameters
    ----------
    result : CaseResult
        The result.
    include_tiles : bool
        Include per-tile coordinates and scores (the heatmap input).
    """
    slides = []
    for s in result.slides:
        slides.append(
            {
                **s.info.to_dict(),
                "width": s.width,
                "height": s.height,
                "base_mpp": _num(s.base_mpp),
                "read_level": s.read_level,
                "read_level_mpp": _num(s.read_level_mpp),
                "tile_mpp": _num(s.tile_mpp),
                "resampled": s.resampled,
                "grid_tiles": s.grid_tiles,
                "tissue_tiles": s.tissue_tiles,
                "tiles_used": s.tiles_used,
                "tissue_fraction": _num(s.tissue_fraction, 4),
                "mean_embedding_norm": _num(s.mean_embedding_norm, 4),
                "qc_flags": [str(f) for f in s.qc_flags],
                "tiles": _tiles_to_dict(s.tiles) if include_tiles and s.tiles else None,
            }
        )
    m = result.model
    return {
        "schema": RESULT_SCHEMA,
        "case_id": result.case_id,
        "call": str(result.call),
        "probability": _num(result.probability),
        "score": _num(result.score),
        "threshold": _num(result.threshold),
        "qc_flags": [str(f) for f in result.qc_flags],
        "n_tiles": result.n_tiles,
        "case_embedding_norm": _num(result.case_embedding_norm, 4),
        "model": {
            "display_name": m.display_name,
            "head_name": m.head_name,
            "head_version": m.head_version,
            "endpoint": m.endpoint,
            "backbone": m.backbone.to_dict(),
            "preset": m.preset,
            "demo": m.demo,
            "intended_use": m.intended_use,
        },
        "tiling": result.tiling,
        "slides": slides,
        "timings": {
            "tiling_s": round(result.timings.tiling_s, 3),
            "embedding_s": round(result.timings.embedding_s, 3),
            "head_s": round(result.timings.head_s, 3),
            "total_s": round(result.timings.total_s, 3),
        },
        "runtime": asdict(result.runtime),
        "engine_version": result.engine_version,
        "created": result.created,
    }


def result_to_json(result: CaseResult, include_tiles: bool = True) -> str:
    """Serialise a result to JSON text (see :func:`result_to_dict`)."""
    return json.dumps(result_to_dict(result, include_tiles), indent=2) + "\n"


def result_from_dict(data: dict[str, Any]) -> CaseResult:
    """Rebuild a result from :func:`result_to_dict` output.

    Raises
    ------
    ValueError
        If the schema is not ``ihgamp-result/1`` or a field is missing.
    """
    if data.get("schema") != RESULT_SCHEMA:
        raise ValueError(f"not an {RESULT_SCHEMA} document")
    try:
        slides = tuple(
            SlideResult(
                info=SlideInfo.from_dict(s),
                width=int(s["width"]),
                height=int(s["height"]),
                base_mpp=float(s["base_mpp"]),
                read_level=s["read_level"],
                read_level_mpp=s["read_level_mpp"],
                tile_mpp=s["tile_mpp"],
                resampled=bool(s["resampled"]),
                grid_tiles=int(s["grid_tiles"]),
                tissue_tiles=int(s["tissue_tiles"]),
                tiles_used=int(s["tiles_used"]),
                tissue_fraction=float(s["tissue_fraction"]),
                mean_embedding_norm=s["mean_embedding_norm"],
                qc_flags=tuple(QCFlag(f) for f in s["qc_flags"]),
                tiles=_tiles_from_dict(s["tiles"]) if s.get("tiles") else None,
            )
            for s in data["slides"]
        )
        m = data["model"]
        t = data["timings"]
        return CaseResult(
            case_id=data["case_id"],
            slides=slides,
            n_tiles=int(data["n_tiles"]),
            score=data["score"],
            probability=data["probability"],
            threshold=float(data["threshold"]),
            call=Call(data["call"]),
            qc_flags=tuple(QCFlag(f) for f in data["qc_flags"]),
            model=ModelIdentity(
                head_name=m["head_name"],
                head_version=m["head_version"],
                endpoint=m["endpoint"],
                backbone=BackboneIdentity.from_dict(m["backbone"]),
                preset=m["preset"],
                demo=bool(m["demo"]),
                intended_use=m["intended_use"],
                display_name=m["display_name"],
            ),
            tiling=dict(data["tiling"]),
            case_embedding_norm=data["case_embedding_norm"],
            timings=Timings(**t),
            engine_version=data["engine_version"],
            created=data["created"],
            runtime=Runtime(**data.get("runtime", {})),
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"result document is incomplete: {exc}") from exc
