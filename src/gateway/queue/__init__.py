"""The job queue: one small interface, an in-process backend."""

from .base import CatalogSubmitter, JobQueue
from .inprocess import InProcessQueue, JobProcessor, PermanentJobError

__all__ = ["CatalogSubmitter", "InProcessQueue", "JobProcessor", "JobQueue", "PermanentJobError"]
