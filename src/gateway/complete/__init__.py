"""Study completion: series/study stability, expected series, forced completion."""

from .completion import CompletionMonitor, Decision, Submitter, decide, scoreable_series

__all__ = ["CompletionMonitor", "Decision", "Submitter", "decide", "scoreable_series"]
