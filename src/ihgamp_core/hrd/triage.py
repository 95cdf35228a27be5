"""HRD's triage policy: what an HRD estimate means for the next clinical step.

Rules, in order (the first that applies wins):

1. Any QC flag -> ``manual-review``: "No result: manual review."
2. The histology matches a pattern the model is not validated for (squamous
   carcinomas of lung, head and neck and cervix, where the paper found no signal)
   -> ``not-validated``: "Model not validated for this histology: molecular testing
   recommended."
3. Probability >= the head's operating threshold -> ``prioritise-testing``:
   "HRD likely: prioritise confirmatory molecular testing."
4. Otherwise -> ``usual-criteria``: "HRD unlikely on morphology; molecular testing per
   usual criteria."

The histology comes from the slides' DICOM specimen description or the study
description, or from the order (see the gateway's ``[triage]`` configuration). Every
text carries the statement that this is a screening/triage estimate, not a companion
diagnostic; demo results add that they are not for clinical use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from ..report.triage import DEMO_DISCLAIMER, Triage
from .result import CaseResult

__all__ = ["DISCLAIMER", "TriageCategory", "TriagePolicy", "triage"]

DISCLAIMER = (
    "Screening/triage estimate of homologous recombination deficiency from H&E "
    "morphology (IHGAMP). Not a companion diagnostic: treatment decisions need a "
    "validated molecular HRD test."
)


class TriageCategory(StrEnum):
    """HRD's triage outcomes (the rules of the module docstring)."""

    PRIORITISE_TESTING = "prioritise-testing"
    USUAL_CRITERIA = "usual-criteria"
    NOT_VALIDATED = "not-validated"
    MANUAL_REVIEW = "manual-review"


DEFAULT_NOT_VALIDATED = (r"squamous", r"\bSCC\b", r"keratini[sz]ing")


@dataclass(frozen=True)
class TriagePolicy:
    """Configurable texts and histology patterns.

    Parameters
    ----------
    not_validated_patterns : tuple of str
        Case-insensitive regular expressions; a matching histology gets ``not-validated``.
    texts : dict
        Text per category (``prioritise-testing``, ``usual-criteria``, ``not-validated``,
        ``manual-review``).
    """

    not_validated_patterns: tuple[str, ...] = DEFAULT_NOT_VALIDATED
    texts: dict[str, str] = field(
        default_factory=lambda: {
            TriageCategory.PRIORITISE_TESTING: (
                "HRD likely: prioritise confirmatory molecular testing."
            ),
            TriageCategory.USUAL_CRITERIA: (
                "HRD unlikely on morphology; molecular testing per usual criteria."
            ),
            TriageCategory.NOT_VALIDATED: (
                "Model not validated for this histology: molecular testing recommended."
            ),
            TriageCategory.MANUAL_REVIEW: "No result: manual review.",
        }
    )

    def __post_init__(self) -> None:
        for pattern in self.not_validated_patterns:
            re.compile(pattern)
        missing = set(TriageCategory) - set(self.texts)
        if missing:
            raise ValueError(f"triage texts missing for: {sorted(missing)}")

    def not_validated(self, histology: str | None) -> bool:
        """Whether ``histology`` matches a not-validated pattern."""
        if not histology:
            return False
        return any(
            re.search(p, histology, flags=re.IGNORECASE) for p in self.not_validated_patterns
        )


def triage(result: CaseResult, histology: str | None, policy: TriagePolicy | None = None) -> Triage:
    """Apply the policy to a result (see the module docstring)."""
    policy = policy or TriagePolicy()
    if result.qc_flags or result.probability is None:
        category = TriageCategory.MANUAL_REVIEW
    elif policy.not_validated(histology):
        category = TriageCategory.NOT_VALIDATED
    elif result.probability >= result.threshold:
        category = TriageCategory.PRIORITISE_TESTING
    else:
        category = TriageCategory.USUAL_CRITERIA
    statement = DISCLAIMER + (f" {DEMO_DISCLAIMER}" if result.model.demo else "")
    return Triage(category, policy.texts[category], histology, statement)
