"""Exceptions raised by the gateway.

::

    GatewayError
    ├── ConfigError           the configuration is invalid (names the key)
    ├── SpoolError            the spool cannot store an instance
    │   └── DiskFullError     free space is below the configured floor
    ├── CatalogError          the catalog database is unusable
    ├── UidConflictError      a received UID already belongs to another study/series
    │   └── InstanceConflictError   the SOP Instance UID does
    ├── StudyConflictError    an instance may not join its study
    │   ├── PatientConflictError    it is of another patient than the study's
    │   └── SenderConflictError     the study was scored and only its first sender may add
    ├── ResultWithheldError   a result was not issued: a person must review the study
    ├── ResultUnchangedError  a result equals the one already issued (not issued again)
    ├── PermanentJobError     a job that retrying cannot help (bad data, bad model file)
    ├── DispatchError         a result could not be delivered to a destination
    └── RemoteError           a remote PACS or FHIR server refused or failed a request
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CatalogError",
    "ConfigError",
    "DiskFullError",
    "DispatchError",
    "GatewayError",
    "InstanceConflictError",
    "PatientConflictError",
    "SenderConflictError",
    "StudyConflictError",
    "UidConflictError",
    "RemoteError",
    "PermanentJobError",
    "ResultUnchangedError",
    "ResultWithheldError",
    "SpoolError",
]


class GatewayError(Exception):
    """Root of every error the gateway raises deliberately."""


class ConfigError(GatewayError):
    """The configuration is invalid; the message names the key."""


class SpoolError(GatewayError):
    """An instance cannot be stored in the spool."""


class DiskFullError(SpoolError):
    """Free disk space is below the configured floor."""


class CatalogError(GatewayError):
    """The catalog database cannot be used."""


class CatalogUnavailableError(CatalogError):
    """The catalog database cannot be reached now; the same call may succeed later."""


class UidConflictError(GatewayError):
    """A received series UID already belongs to another study (refused, never moved)."""


class InstanceConflictError(UidConflictError):
    """A received SOP Instance UID already belongs to another study or series."""


class StudyConflictError(GatewayError):
    """An instance may not join the study it names (refused, nothing in the study changes)."""


class PatientConflictError(StudyConflictError):
    """The instance's patient identity differs from its study's first instances."""


class SenderConflictError(StudyConflictError):
    """The study was scored, and only the sender that opened it may add to it."""


class ResultWithheldError(GatewayError):
    """A result was not issued (e.g. its subject differs from the result it would replace)."""


class ResultUnchangedError(GatewayError):
    """A new result has the key of the one already issued: same inputs, same model.

    Issuing it again would send new content under the SOP Instance UIDs already sent;
    the earlier result (its ``result.json`` at ``path``) stands.
    """

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class PermanentJobError(GatewayError):
    """Raised by a job processor when retrying cannot help (bad data, bad model file)."""


class DispatchError(GatewayError):
    """A result could not be delivered to a destination."""


class RemoteError(GatewayError):
    """A remote node (PACS, FHIR server) refused or failed a request."""
