"""The job queue: one small interface; in-process and Celery backends."""

from ..errors import PermanentJobError
from .base import JobQueue
from .inprocess import InProcessQueue
from .runner import JobOutcome, JobProcessor, JobRunner

__all__ = [
    "InProcessQueue",
    "JobOutcome",
    "JobProcessor",
    "JobQueue",
    "JobRunner",
    "PermanentJobError",
]
