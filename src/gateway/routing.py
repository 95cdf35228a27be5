"""Routing a complete study to the enabled analyses (``[analyses]`` settings).

The receiver side of :func:`ihgamp_core.analysis.route`: it reads one header per slide
series from the spool (never the pixels), applies the site's metadata rules, and
returns the decision the life cycle stores and queues. It imports no model code (no
torch): the analyses' declarations are plain data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ihgamp_core.analysis import (
    AnalysisRequest,
    AnalysisSpec,
    InputKind,
    RoutingDecision,
    SeriesMetadata,
    route,
    series_metadata_from_dataset,
)

from . import analyses
from .catalog import Catalog
from .config import AnalysesSettings

if TYPE_CHECKING:  # headers are read when a study is routed, not when the module loads
    from pydicom.dataset import Dataset

__all__ = ["StudyRouter", "enabled_specs", "job_key", "routing_header"]

logger = logging.getLogger(__name__)


def job_key(request: AnalysisRequest, spec: AnalysisSpec) -> str:
    """A request's job key in its study.

    The analysis for whole-case analyses (one job per study, whatever blocks its slides
    come from), else the request's key (``<analysis>:<block>``).
    """
    if spec.applicability.inputs in (InputKind.SLIDES, InputKind.SERIES):
        return str(request.analysis)
    return request.job_key


def routing_header(
    path: Path, sop_class: str, modality: str | None = None
) -> tuple[Dataset, str | None]:
    """One instance's header for routing (never the pixels), and why it could not be read.

    A header that cannot be read gives a dataset of ``sop_class`` (and ``modality``)
    that nothing else describes: for a slide the configured defaults apply, without a
    default stain routing refuses it, and whoever opens the series later reports why it
    cannot be read.
    """
    import pydicom
    from pydicom.dataset import Dataset

    try:
        return pydicom.dcmread(path, stop_before_pixels=True), None
    except (OSError, ValueError, pydicom.errors.InvalidDicomError) as exc:
        blank = Dataset()
        blank.SOPClassUID = sop_class
        if modality:
            blank.Modality = modality
        return blank, str(exc)


def enabled_specs(settings: AnalysesSettings) -> list[AnalysisSpec]:
    """The enabled analyses' declarations (from the registry), in the configured order."""
    return [analyses.entry(n).spec for n in settings.enabled]


class StudyRouter:
    """Decides which analyses run on which slides of a complete study.

    Parameters
    ----------
    catalog : Catalog
        Where the study's slide files are.
    settings : AnalysesSettings
        Enabled analyses and metadata rules.
    """

    def __init__(self, catalog: Catalog, settings: AnalysesSettings) -> None:
        self.catalog = catalog
        self.specs = enabled_specs(settings)
        self.rules = settings.metadata_rules()
        self.limits = settings.routing_limits()

    def reads(self, sop_class_uid: str) -> bool:
        """Whether any enabled analysis could read a series of this SOP class.

        Completion asks it: a study holding nothing any analysis reads is ignored.
        """
        return any(spec.applicability.reads_sop_class(sop_class_uid) for spec in self.specs)

    def series(self, study_uid: str) -> list[SeriesMetadata]:
        """Routing metadata of each series an enabled analysis could read, by Series UID.

        A series whose header cannot be read is routed as a series of its SOP class that
        nothing describes (:func:`routing_header`, with what the catalog knows of it); the
        worker that opens it reports why it cannot be read, as before routing existed.
        """
        out = []
        files = self.catalog.series_files(study_uid)
        for series_uid, series in sorted(files.items()):
            if not self.reads(series.sop_class_uid):
                continue
            ds, error = routing_header(Path(series.paths[0]), series.sop_class_uid, series.modality)
            if error is not None:
                logger.warning(
                    "series header unreadable for routing",
                    extra={"study_uid": study_uid, "series_uid": series_uid, "error": error},
                )
            out.append(series_metadata_from_dataset(ds, self.rules, key=series_uid))
        return out

    def decide(self, study_uid: str) -> RoutingDecision:
        """Route the study's series over the enabled analyses."""
        return route(self.series(study_uid), self.specs, self.limits)

    def job_key(self, request: AnalysisRequest) -> str:
        """The job's key in the study (:func:`job_key`, with the request's analysis)."""
        return job_key(request, next(s for s in self.specs if s.name == request.analysis))

    def to_dict(self, decision: RoutingDecision) -> dict[str, Any]:
        """The decision as the catalog stores it, with the gateway's job keys."""
        data = decision.to_dict()
        for request, entry in zip(decision.requests, data["requests"], strict=True):
            entry["job_key"] = self.job_key(request)
        return data
