"""IHGAMP engine: whole-slide images in, HRD estimate out.

The engine is pure: it reads slides from paths, computes, and returns values. It has
no sockets, no database and no global state; the ``gateway`` package does I/O.

Data flow::

    slide (DICOM WSI / vendor file)
      -> tiling (level choice, tissue mask, tile grid, deterministic cap)
      -> embedding (OpenCLIP ViT-B/16 image tower, batched)
      -> case mean -> head (PCA -> Ridge -> Platt) -> CaseResult
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    ArtifactError,
    BackboneMismatchError,
    CheckpointError,
    IhgampError,
    ModelError,
    NoUsableLevelError,
    PairingError,
    ParameterError,
    PixelSpacingError,
    SlideError,
    SlideOpenError,
    SlideReadError,
)

__all__ = [
    "ArtifactError",
    "BackboneMismatchError",
    "CheckpointError",
    "IhgampError",
    "ModelError",
    "NoUsableLevelError",
    "PairingError",
    "ParameterError",
    "PixelSpacingError",
    "SlideError",
    "SlideOpenError",
    "SlideReadError",
    "__version__",
]
