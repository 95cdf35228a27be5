"""Query/retrieve from PACS: C-FIND, C-MOVE, C-GET, DICOMweb; on demand and auto-pull."""

from .dimse import RetrieveReport, SeriesMatch, StudyMatch, find_series, find_studies
from .poller import AutoPuller
from .service import PullOutcome, RetrieveService

__all__ = [
    "AutoPuller",
    "PullOutcome",
    "RetrieveReport",
    "RetrieveService",
    "SeriesMatch",
    "StudyMatch",
    "find_series",
    "find_studies",
]
