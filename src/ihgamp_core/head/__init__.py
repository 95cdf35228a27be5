"""The HRD head: PCA -> Ridge -> Platt, as pickle-free arrays plus JSON metadata."""

from .artifact import (
    DEMO_LABEL,
    FORMAT_NAME,
    FORMAT_VERSION,
    HeadArtifact,
    HeadMetadata,
    load_head,
    save_head,
)
from .fit import LinearFit, PlattMode, fit_linear, fit_platt, youden_threshold

__all__ = [
    "DEMO_LABEL",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HeadArtifact",
    "HeadMetadata",
    "LinearFit",
    "PlattMode",
    "fit_linear",
    "fit_platt",
    "load_head",
    "save_head",
    "youden_threshold",
]
