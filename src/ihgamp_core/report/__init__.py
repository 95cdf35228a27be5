"""The shared report kit every analysis builds its outputs with.

* :mod:`.context`: :class:`ReportContext` (the source DICOM headers), stable output UIDs
  (:func:`~.context.derive_output_ids`), :class:`Supersedes`.
* :mod:`.sr`: the TID 1500 Measurement Report in a Comprehensive 3D SR.
* :mod:`.heatmap`: tile grids in the slide's frame, map object geometry, PNG overlays.
* :mod:`.fhir`: the Observation frame, Device, transaction Bundle, ImagingStudy.
* :mod:`.triage`: the triage outcome; :mod:`.codes`: the shared codes.

It imports no analysis: each analysis' own reports are in its folder (``hrd/reports.py``,
``her2/reports.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["OutputIds", "ReportContext", "SlideHeaders", "Supersedes", "Triage"]

if TYPE_CHECKING:
    from .context import OutputIds, ReportContext, SlideHeaders, Supersedes
    from .triage import Triage


def __getattr__(name: str) -> Any:
    """The kit's names, imported on first use (pydicom only when headers are read)."""
    if name == "Triage":
        from .triage import Triage

        return Triage
    if name in __all__:
        from . import context

        return getattr(context, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
