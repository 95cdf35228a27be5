"""HRD's reports of a result: triage, DICOM SR, heatmaps (Parametric Map + PNG), FHIR.

All are serialisers of :class:`~ihgamp_core.hrd.result.CaseResult` plus the source DICOM
headers (:class:`~ihgamp_core.report.ReportContext`); :func:`build_reports` makes them all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import NDArray

from ..report.context import (
    OutputIds,
    ReportContext,
    SlideHeaders,
    Supersedes,
    derive_output_ids,
)
from ..report.fhir import default_patient_system
from ..report.outputs import (
    HeatmapObject,
    Outputs,
    amended_triage,
    bundle_if_patient,
    place_maps,
)
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


#: Everything produced for one HRD result.
CaseReport = Outputs[CaseResult]


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
    outcome = amended_triage(triage(result, context.histology, policy), supersedes)
    sr = build_sr(result, outcome, context, ids, supersedes)
    notes: list[str] = list(context.header_notes)

    def heatmap(index: int, headers: SlideHeaders) -> HeatmapObject:
        slide = result.slides[index]
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
        return HeatmapObject(headers.series_uid, pm, png)

    mapped = [
        (index, slide.info.series_instance_uid)
        for index, slide in enumerate(result.slides)
        if slide.tiles is not None and len(slide.tiles)
    ]
    heatmaps = place_maps(context, mapped, heatmap, notes)
    bundle = bundle_if_patient(
        context,
        lambda: build_bundle(result, outcome, context, ids, patient_system, supersedes=supersedes),
        notes,
    )
    return CaseReport(result, outcome, ids, sr, heatmaps, bundle, tuple(notes))
