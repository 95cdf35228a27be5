"""The analyses the gateway ships: HRD (IHGAMP, H&E) and HER2 (H&E + optional IHC).

Each is an :class:`~gateway.analyses.registry.AnalysisEntry`: the engine's declaration,
its settings table, its loader. Their models live in :mod:`ihgamp_core` (the HER2 model
imports torch, so it is imported by the loader, on a worker's first HER2 job).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from ihgamp_core.analysis import Analysis, AnalysisName, AnalysisSpec
from ihgamp_core.errors import IhgampError
from ihgamp_core.her2.spec import HER2_SPEC
from ihgamp_core.hrd.spec import HRD_APPLICABILITY

from .registry import AnalysisEntry, AnalysisLoadError, AnalysisSettings, LoadContext, register

__all__ = ["HER2", "HER2_DEMO_ENV", "HRD", "Her2Settings", "her2_demo_path"]

#: Environment variable naming the DEMO HER2 checkpoint (overrides the repository copy).
HER2_DEMO_ENV = "IHGAMP_HER2_DEMO"


def _load_hrd(context: LoadContext) -> Analysis[Any]:
    from ihgamp_core.hrd.analysis import HrdAnalysis

    if context.engine is None:
        raise AnalysisLoadError("HRD scores with the worker's [model] engine; none is loaded")
    return HrdAnalysis(context.engine, context.scoring)


def _export_hrd(result: Any) -> dict[str, Any]:
    from ihgamp_core.hrd.result import result_to_dict

    return result_to_dict(result)


def _export_her2(result: Any) -> dict[str, Any]:
    from ihgamp_core.her2.result import her2_result_to_dict

    return her2_result_to_dict(result)


#: HRD from H&E morphology (the IHGAMP model of ``[model]``), every H&E slide of a case.
HRD = register(
    AnalysisEntry(
        spec=AnalysisSpec(AnalysisName.HRD, HRD_APPLICABILITY),
        load=_load_hrd,
        title="HRD (IHGAMP, H&E)",
        needs_scoring_level=True,
        uses_engine=True,
        export=_export_hrd,
    )
)


class Her2Settings(AnalysisSettings):
    """``[analyses.her2]``: the HER2 model.

    Parameters
    ----------
    model : Path or None
        Checkpoint (``.safetensors``, or ``.pt``/``.pth`` read weights-only); None: the
        shipped DEMO model, and every output says DEMO.
    max_tiles : int or None
        Per-slide tile cap (None: 2000).
    """

    model: Path | None = None
    max_tiles: int | None = Field(default=None, ge=1)

    @field_validator("model")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{value} does not exist")
        return value


def her2_demo_path() -> Path:
    """Return where the shipped DEMO HER2 checkpoint lives.

    Raises
    ------
    AnalysisLoadError
        If it is missing (the message says which variable to set).
    """
    from .engine import repo_root

    configured = os.environ.get(HER2_DEMO_ENV)
    path = (
        Path(configured)
        if configured
        else repo_root() / "sample_data" / "her2_demo" / "her2-demo.safetensors"
    )
    if not path.is_file():
        raise AnalysisLoadError(
            f"no HER2 model given and the DEMO model is not at {path}; set "
            f"[analyses.her2] model, or {HER2_DEMO_ENV} to "
            "sample_data/her2_demo/her2-demo.safetensors"
        )
    return path


def _load_her2(context: LoadContext) -> Analysis[Any]:
    from ihgamp_core.embed import resolve_device
    from ihgamp_core.her2.analysis import Her2Analysis
    from ihgamp_core.her2.infer import Her2Options
    from ihgamp_core.her2.model import load_her2

    settings = context.settings
    if not isinstance(settings, Her2Settings):
        raise AnalysisLoadError("HER2: its settings are not an [analyses.her2] table")
    try:
        model = load_her2(settings.model or her2_demo_path(), resolve_device(context.device))
    except IhgampError as exc:
        raise AnalysisLoadError(f"HER2 model: {exc}") from exc
    return Her2Analysis(model, Her2Options(max_tiles=settings.max_tiles or 2000))


def _her2_legend() -> list[tuple[str, str]]:
    from ihgamp_core.her2.config import CLASS_LABELS
    from ihgamp_core.her2.reports import CLASS_COLOURS

    return [
        (label, "#{:02x}{:02x}{:02x}".format(*(int(v) for v in colour)))
        for label, colour in zip(CLASS_LABELS, CLASS_COLOURS, strict=True)
    ]


#: HER2 category from breast H&E with the block's HER2 IHC when present.
HER2 = register(
    AnalysisEntry(
        spec=HER2_SPEC,
        load=_load_her2,
        title="HER2 (H&E + IHC)",
        settings=Her2Settings,
        legend=_her2_legend,
        export=_export_her2,
        legacy_keys={"her2_model": "model", "her2_device": "device", "her2_max_tiles": "max_tiles"},
    )
)
