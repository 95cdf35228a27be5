"""HRD's reports of a result: triage, DICOM SR, heatmaps (Parametric Map + PNG), FHIR.

All are serialisers of :class:`~ihgamp_core.hrd.result.CaseResult` plus the source DICOM
headers (:class:`~ihgamp_core.report.ReportContext`); :func:`build_reports` makes them all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..report.context import OutputIds, ReportContext, Supersedes, derive_output_ids
from ..report.fhir import default_patient_system
from ..report.triage import Triage
from .fhir import build_bundle
from .maps import build_parametric_map, overlay_png
from .result import CaseResult
from .sr import build_sr
from .triage import TriagePolicy, triage

__all__ = ["CaseReport", "build_reports", "model_key", "output_ids"]


def model_key(result: CaseResult) -> str:
    """Identify head + backbone + preset of a result."""
    return result.model.key


def output_ids(result: CaseResult) -> OutputIds:
    """Compute the stable identifiers of an HRD result's outputs."""
    study = result.slides[0].info.study_instance_uid or result.case_id
    inputs = [uid for s in result.slides for uid in s.info.sop_instance_uids]
    tiling = repr(sorted(result.tiling.items()))
    return derive_output_ids(study, model_key(result), tiling, inputs, len(result.slides))


@dataclass(frozen=True)
class CaseReport:
    """Everything produced for one result.

    Parameters
    ----------
    result : CaseResult
        The engine's result.
    triage : Triage
        Triage outcome.
    ids : OutputIds
        Stable identifiers of the outputs.
    sr : pydicom.dataset.Dataset
        The DICOM SR.
    heatmaps : tuple
        ``(series_uid, Parametric Map dataset, PNG bytes or None)`` per slide with tiles.
    bundle : fhir.resources.R4B.bundle.Bundle or None
        The FHIR transaction Bundle; None when the study has no Patient ID.
    notes : tuple of str
        Why an output is missing.
    """

    result: CaseResult
    triage: Triage
    ids: OutputIds
    sr: Any
    heatmaps: tuple[tuple[str, Any, bytes | None], ...]
    bundle: Any
    notes: tuple[str, ...] = ()


def build_reports(
    result: CaseResult,
    context: ReportContext,
    probability: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    thumbnails: Mapping[str, NDArray[np.uint8]] | None = None,
    policy: TriagePolicy | None = None,
    patient_system: Callable[[str | None], str] = default_patient_system,
    supersedes: Supersedes | None = None,
) -> CaseReport:
    """Build triage, SR, heatmaps and the FHIR Bundle of a result.

    Parameters
    ----------
    result : CaseResult
        The engine's result.
    context : ReportContext
        Source headers, one entry per slide of the result.
    probability : callable
        The head's Platt function (tile scores -> probabilities).
    thumbnails : mapping, optional
        Slide thumbnails by Series Instance UID, for the PNG overlays.
    policy : TriagePolicy, optional
        Triage texts and histology patterns.
    patient_system : callable
        Maps the DICOM Issuer of Patient ID to a FHIR identifier system.
    supersedes : Supersedes, optional
        The earlier result of the study this one replaces: the SR names it as its
        predecessor, the Observation amends it, and the triage text says so.
    """
    ids = output_ids(result)
    outcome = triage(result, context.histology, policy)
    if supersedes is not None:
        outcome = replace(outcome, text=f"{outcome.text} {supersedes.note()}")
    sr = build_sr(result, outcome, context, ids, supersedes)
    heatmaps = []
    notes: list[str] = list(context.header_notes)
    for index, slide in enumerate(result.slides):
        headers = context.slide(slide.info.series_instance_uid)
        if slide.tiles is None or len(slide.tiles) == 0 or headers is None:
            continue
        if headers.no_spatial_objects:
            notes.append(f"slide {headers.series_uid}: {headers.no_spatial_objects}")
            continue
        if headers.spatial_note:
            notes.append(f"slide {headers.series_uid}: {headers.spatial_note}")
        pm = build_parametric_map(
            result,
            slide,
            headers.spatial_base,
            probability,
            ids.pm_series_uid,
            ids.pm_sop_uids[index],
            index + 1,
        )
        thumb = (thumbnails or {}).get(headers.series_uid)
        png = overlay_png(thumb, slide, probability) if thumb is not None else None
        heatmaps.append((headers.series_uid, pm, png))
    bundle = None
    if context.patient_id:
        bundle = build_bundle(result, outcome, context, ids, patient_system, supersedes=supersedes)
    else:
        notes.append("no FHIR Observation: the study has no Patient ID")
    return CaseReport(result, outcome, ids, sr, tuple(heatmaps), bundle, tuple(notes))
