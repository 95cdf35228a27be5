"""Study completion: series/study stability, expected series, forced completion."""

from .completion import CompletionAction, CompletionMonitor, Decision, decide

__all__ = ["CompletionAction", "CompletionMonitor", "Decision", "decide"]
