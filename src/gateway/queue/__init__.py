"""The job queue: one small interface, an in-process backend."""

from .base import JobQueue
from .inprocess import InProcessQueue, JobProcessor, PermanentJobError

__all__ = ["InProcessQueue", "JobProcessor", "JobQueue", "PermanentJobError"]
