"""Durable storage of received DICOM files (write, fsync, rename)."""

from .store import Placement, PreparedFile, Spool, valid_uid

__all__ = ["Placement", "PreparedFile", "Spool", "valid_uid"]
