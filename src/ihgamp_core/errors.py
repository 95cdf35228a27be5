"""Exceptions raised by the engine.

Every exception the engine raises on purpose derives from :class:`IhgampError`,
so callers (the CLI, the gateway's workers) can catch one type, show its message
to a person and carry on. The messages say what went wrong *and* what to do.

::

    IhgampError
    ├── SlideError                  a slide cannot be used
    │   ├── SlideOpenError          not a slide, unreadable, truncated, empty folder
    │   ├── PixelSpacingError       no pixel spacing and no override given
    │   ├── NoUsableLevelError      no pyramid level fine enough for the target spacing
    │   └── SlideReadError          reading pixels failed part-way through
    ├── ModelError                  a model file cannot be used
    │   ├── CheckpointError         backbone checkpoint missing or unloadable
    │   ├── ArtifactError           head artifact malformed, tampered or unsupported
    │   └── BackboneMismatchError   head trained on another backbone's embeddings
    ├── ParameterError              an invalid engine parameter (tiling, preset, option)
    ├── PairingError                H&E and IHC slides that do not belong together
    ├── MixedPatientsError          the inputs of one result belong to more than one patient
    └── ReportBuildError            the reports of a result cannot be built from its inputs
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "BackboneMismatchError",
    "CheckpointError",
    "IhgampError",
    "MixedPatientsError",
    "ModelError",
    "NoUsableLevelError",
    "PairingError",
    "ParameterError",
    "ReportBuildError",
    "PixelSpacingError",
    "SlideError",
    "SlideOpenError",
    "SlideReadError",
]


class IhgampError(Exception):
    """Root of every error the engine raises deliberately."""


class SlideError(IhgampError):
    """A slide cannot be used for scoring."""


class SlideOpenError(SlideError):
    """The path is not a readable whole-slide image (or holds none)."""


class PixelSpacingError(SlideError):
    """The slide stores no pixel spacing and none was supplied."""


class NoUsableLevelError(SlideError):
    """No pyramid level is at or finer than the target pixel spacing."""


class SlideReadError(SlideError):
    """Pixel data could not be read (truncated or corrupt file)."""


class ModelError(IhgampError):
    """A model file (backbone checkpoint or head artifact) cannot be used."""


class CheckpointError(ModelError):
    """The backbone checkpoint is missing, unreadable or does not fit the architecture."""


class ArtifactError(ModelError):
    """The head artifact is malformed, tampered with, or of an unsupported version."""


class BackboneMismatchError(ModelError):
    """The head was trained on embeddings from a different backbone."""


class ParameterError(IhgampError, ValueError):
    """An engine parameter is outside its valid range."""


class PairingError(IhgampError):
    """An H&E and an IHC slide given as a pair do not show the same tissue block."""


class MixedPatientsError(IhgampError):
    """The inputs of one result name more than one patient: no report is built from them."""


class ReportBuildError(IhgampError):
    """The reports of a result cannot be built from the inputs' headers (never retried)."""
