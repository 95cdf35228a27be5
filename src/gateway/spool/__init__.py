"""Durable storage of received DICOM files (write, fsync, rename)."""

from .store import PreparedFile, Spool, valid_uid

__all__ = ["PreparedFile", "Spool", "valid_uid"]
