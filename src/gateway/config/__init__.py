"""Gateway configuration: one TOML file plus environment overrides, validated once.

Every key can be overridden by an environment variable named ``IHGAMP__`` followed by
the key's path in upper case with ``__`` between levels, for example
``IHGAMP__DICOM__PORT=11112`` or ``IHGAMP__MODEL__DEVICE=cuda``. Values are parsed as
TOML values (``11112``, ``true``, ``["A", "B"]``), falling back to a plain string.

:func:`load_settings` returns a frozen :class:`Settings`; an invalid value raises
:class:`~gateway.errors.ConfigError` naming the key, e.g.
``dicom.port: Input should be less than or equal to 65535``.
Every key is documented with its default in ``docs/configuration.md``.
"""

from __future__ import annotations

from .analyses import (
    AnalysesSettings,
    FhirSettings,
    StainRuleSettings,
    TriageSettings,
)
from .base import (
    DEFAULT_SOP_CLASSES,
    ENV_PREFIX,
    AETitle,
    redact_url,
)
from .dicom import (
    AllowedAE,
    DicomSettings,
    PacsNode,
    PullSettings,
    StudyAdditions,
    TlsSettings,
)
from .dispatch import (
    DESTINATION_KINDS,
    DicomNode,
    DicomWebNode,
    DispatchSettings,
    FhirNode,
    Hl7v2Node,
)
from .http import (
    ApiToken,
    HttpSettings,
    TokenAccess,
)
from .runtime import (
    CatalogSettings,
    CompletionSettings,
    LoggingSettings,
    ModelSettings,
    NodeSettings,
    QueueBackend,
    StorageSettings,
    WorkerSettings,
)
from .settings import (
    Settings,
    load_settings,
)

__all__ = [
    "AETitle",
    "AllowedAE",
    "AnalysesSettings",
    "ApiToken",
    "CatalogSettings",
    "CompletionSettings",
    "DEFAULT_SOP_CLASSES",
    "DESTINATION_KINDS",
    "DicomNode",
    "DicomSettings",
    "DicomWebNode",
    "DispatchSettings",
    "ENV_PREFIX",
    "FhirNode",
    "Hl7v2Node",
    "FhirSettings",
    "HttpSettings",
    "LoggingSettings",
    "ModelSettings",
    "NodeSettings",
    "PacsNode",
    "PullSettings",
    "QueueBackend",
    "Settings",
    "StainRuleSettings",
    "StorageSettings",
    "StudyAdditions",
    "TlsSettings",
    "TokenAccess",
    "TriageSettings",
    "WorkerSettings",
    "load_settings",
    "redact_url",
]
