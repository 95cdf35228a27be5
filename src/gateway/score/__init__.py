"""Scoring queued studies: each job's analysis on its series, through the contract."""

from .worker import ScoreProcessor

__all__ = ["ScoreProcessor"]
