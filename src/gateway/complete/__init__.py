"""Study completion: series/study stability, expected series, forced completion."""

from .completion import CompletionMonitor, Decision, decide

__all__ = ["CompletionMonitor", "Decision", "decide"]
