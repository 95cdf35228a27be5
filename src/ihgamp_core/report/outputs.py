"""What one analysis result produces, whatever the analysis: the shared outputs shape.

Every analysis' ``reports.py`` builds an :class:`Outputs` (triage, SR, map objects with
their PNGs, FHIR Bundle, notes on what is missing) the same way:

1. its triage, amended by :meth:`Supersedes.note` when it replaces an earlier result
   (:func:`amended_triage`);
2. its SR;
3. one map object per slide it maps, placed by :func:`place_maps`, which also says why a
   slide gets none (no spatial objects for its header, or a caveat about them);
4. its FHIR Bundle when the study names a patient (:func:`bundle_if_patient`).

:meth:`Outputs.document` is the ``result.json`` content for people.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # annotations only: the analysis contract imports this module
    from fhir.resources.R4B.bundle import Bundle
    from pydicom.dataset import Dataset

    from .context import OutputIds, ReportContext, SlideHeaders, Supersedes
    from .triage import Triage

__all__ = [
    "NO_PATIENT_NOTE",
    "HeatmapObject",
    "Outputs",
    "amended_triage",
    "bundle_if_patient",
    "place_maps",
]

#: Why a result of a study without a Patient ID has no FHIR Observation.
NO_PATIENT_NOTE = "no FHIR Observation: the study has no Patient ID"

R = TypeVar("R")


@dataclass(frozen=True)
class HeatmapObject:
    """A DICOM map object registered to one slide, with its PNG for people.

    Parameters
    ----------
    series_uid : str
        The slide it is registered to.
    dataset : pydicom.dataset.Dataset
        Parametric Map (e.g. HRD's probabilities) or Segmentation (e.g. HER2's classes).
    png : bytes or None
        The same map over a slide thumbnail.
    """

    series_uid: str
    dataset: Dataset
    png: bytes | None


@dataclass(frozen=True)
class Outputs(Generic[R]):
    """Everything produced for one result of an analysis.

    Parameters
    ----------
    result : R
        The analysis' result.
    triage : Triage
        Triage outcome.
    ids : OutputIds
        Stable identifiers of the outputs.
    sr : pydicom.dataset.Dataset
        The DICOM SR.
    heatmaps : tuple of HeatmapObject
        The map objects, one per mapped slide.
    bundle : fhir.resources.R4B.bundle.Bundle or None
        The FHIR transaction Bundle; None when the study has no Patient ID.
    notes : tuple of str
        Why an output is missing.
    """

    result: R
    triage: Triage
    ids: OutputIds
    sr: Dataset
    heatmaps: tuple[HeatmapObject, ...]
    bundle: Bundle | None
    notes: tuple[str, ...] = ()

    def document(self, result: dict[str, Any], notes: Iterable[str] = ()) -> dict[str, Any]:
        """The ``result.json`` content of the result's own dictionary.

        It gains ``triage``, ``notes`` (those given first, then the outputs' own) and
        ``outputs`` (the identifiers of what was issued).
        """
        data = dict(result)
        data["triage"] = self.triage.to_dict()
        data["notes"] = [*notes, *self.notes]
        data["outputs"] = self.ids.to_dict()
        return data


def amended_triage(triage: Triage, supersedes: Supersedes | None) -> Triage:
    """The triage, its text ending with the superseding note when there is one."""
    if supersedes is None:
        return triage
    return replace(triage, text=f"{triage.text} {supersedes.note()}")


def place_maps(
    context: ReportContext,
    slides: Iterable[tuple[int, str | None]],
    build: Callable[[int, SlideHeaders], HeatmapObject],
    notes: list[str],
) -> tuple[HeatmapObject, ...]:
    """Build a map object for each slide whose header allows one.

    Parameters
    ----------
    context : ReportContext
        The slides' headers.
    slides : iterable of (int, str)
        ``(index, series UID)`` of each slide the analysis maps (those with tiles); the
        index is the map's position among the result's map UIDs.
    build : callable
        Makes the map object of one slide from its index and headers.
    notes : list of str
        Receives why a slide gets no map, or a caveat about its map.

    Returns
    -------
    tuple of HeatmapObject
        The map objects, in the order of ``slides``.
    """
    maps = []
    for index, series_uid in slides:
        headers = context.slide(series_uid)
        if headers is None:
            continue
        if headers.no_spatial_objects:
            notes.append(f"slide {headers.series_uid}: {headers.no_spatial_objects}")
            continue
        if headers.spatial_note:
            notes.append(f"slide {headers.series_uid}: {headers.spatial_note}")
        maps.append(build(index, headers))
    return tuple(maps)


def bundle_if_patient(
    context: ReportContext, build: Callable[[], Bundle], notes: list[str]
) -> Bundle | None:
    """The FHIR Bundle when the study names a patient; else None and a note saying so."""
    if context.patient_id:
        return build()
    notes.append(NO_PATIENT_NOTE)
    return None
