"""Receiving DICOM: the listener (C-ECHO, C-STORE SCP), access policy, status mapping."""

from .access import AccessDecision, AccessPolicy
from .guard import DatasetMismatchError, UnreadableDatasetError, status_for, store_guard
from .handlers import ReceiveHandlers
from .server import TRANSFER_SYNTAXES, DicomListener, configure_pynetdicom, tls_server_context
from .validate import InstanceHeader, read_header

__all__ = [
    "TRANSFER_SYNTAXES",
    "AccessDecision",
    "AccessPolicy",
    "DatasetMismatchError",
    "DicomListener",
    "InstanceHeader",
    "ReceiveHandlers",
    "UnreadableDatasetError",
    "configure_pynetdicom",
    "read_header",
    "status_for",
    "store_guard",
    "tls_server_context",
]
