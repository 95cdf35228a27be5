"""Delivering results: the local outbox (and, later, PACS and EHR destinations)."""

from .outbox import Outbox, atomic_write

__all__ = ["Outbox", "atomic_write"]
