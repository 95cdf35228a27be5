"""What a result means for the next clinical step: the outcome every analysis' triage gives.

Each analysis has its own policy (``hrd/triage.py``, ``her2/triage.py``); every text
carries the analysis' intended-use statement, and DEMO models add
:data:`DEMO_DISCLAIMER`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEMO_DISCLAIMER", "Triage"]

DEMO_DISCLAIMER = "DEMO - synthetic training data - not for clinical use."


@dataclass(frozen=True)
class Triage:
    """The triage outcome of one result.

    Parameters
    ----------
    category : str
        The analysis' triage category (HRD: ``prioritise-testing``, ``usual-criteria``,
        ``not-validated`` or ``manual-review``).
    text : str
        The recommendation for people.
    histology : str or None
        The histology the decision used.
    statement : str
        The intended-use statement (with the demo notice for demo models).
    """

    category: str
    text: str
    histology: str | None
    statement: str

    def to_dict(self) -> dict[str, str | None]:
        """The ``triage`` block of a result document."""
        return {
            "category": self.category,
            "text": self.text,
            "statement": self.statement,
            "histology": self.histology,
        }
