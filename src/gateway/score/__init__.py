"""Scoring queued studies with the engine."""

from .worker import ScoreProcessor, model_key

__all__ = ["ScoreProcessor", "model_key"]
