"""The outbox: the results the gateway produced, one folder per study (beside the spool)."""

from .store import Outbox, atomic_write, job_folder

__all__ = ["Outbox", "atomic_write", "job_folder"]
