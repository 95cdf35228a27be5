"""The HER2 triage policy: what a HER2 estimate means for the next step.

Rules, in order (the first that applies wins):

1. Any QC flag -> ``manual-review``: "No HER2 result: manual review."
2. No IHC slide (``he-only-synthesised-ihc``) -> ``confirm-with-ihc``: the score was
   estimated from H&E alone with an IHC synthesised inside the model (never shown);
   order HER2 IHC, pathologist confirmation required.
3. No H&E slide (``ihc-only``) -> ``confirm-without-he``: pathologist confirmation.
4. Score 2+ -> ``ish-required``: equivocal; pathologist scoring and ISH for ERBB2
   amplification (HER2-low if not amplified).
5. Otherwise -> ``pathologist-confirmation``.

Every text carries the intended-use statement (an aid, never the final score; no
amplification assessment) and, for DEMO models, the DEMO notice.
"""

from __future__ import annotations

from enum import StrEnum

from ..analysis.contract import ModalityPath
from ..report.triage import DEMO_DISCLAIMER, Triage
from .result import Her2Result, Her2Score

__all__ = [
    "HER2_DISCLAIMER",
    "MISSING_HE_NOTE",
    "MISSING_IHC_NOTE",
    "Her2TriageCategory",
    "her2_triage",
]

HER2_DISCLAIMER = (
    "AI-assisted HER2 IHC score estimate (IHGAMP HER2) for breast cancer: an aid, never the "
    "final score; a pathologist scores HER2 per ASCO/CAP. The model cannot assess ERBB2 "
    "amplification, so it does not decide HER2-low (1+, or 2+ without amplification)."
)
MISSING_IHC_NOTE = (
    "No HER2 IHC slide: estimated from H&E with an IHC image synthesised inside the model. "
    "The synthesised image is not emitted and must not be read (pathologists read "
    "GAN-generated IHC at 37.5-40 % accuracy in the BCI study)."
)
MISSING_HE_NOTE = (
    "No H&E slide of the same block: estimated from the IHC with an H&E image synthesised "
    "inside the model (not emitted)."
)


class Her2TriageCategory(StrEnum):
    """HER2 triage categories (see the module docstring)."""

    MANUAL_REVIEW = "manual-review"
    CONFIRM_WITH_IHC = "confirm-with-ihc"
    CONFIRM_WITHOUT_HE = "confirm-without-he"
    ISH_REQUIRED = "ish-required"
    PATHOLOGIST_CONFIRMATION = "pathologist-confirmation"


_TEXTS = {
    Her2TriageCategory.MANUAL_REVIEW: "No HER2 result: manual review.",
    Her2TriageCategory.CONFIRM_WITH_IHC: (
        "HER2 {score} estimated from H&E alone (IHC missing): order HER2 IHC; the score needs "
        "pathologist confirmation."
    ),
    Her2TriageCategory.CONFIRM_WITHOUT_HE: (
        "HER2 {score} estimated from the IHC without an H&E slide of the same block: "
        "pathologist confirmation required."
    ),
    Her2TriageCategory.ISH_REQUIRED: (
        "HER2 2+ (equivocal) estimate: pathologist scoring and ISH for ERBB2 amplification "
        "required; HER2-low if not amplified."
    ),
    Her2TriageCategory.PATHOLOGIST_CONFIRMATION: (
        "HER2 {score} estimate from H&E and IHC: pathologist confirmation required before "
        "reporting."
    ),
}


def her2_triage(result: Her2Result, histology: str | None = None) -> Triage:
    """Apply the policy to a HER2 result (see the module docstring)."""
    if result.qc_flags or result.score is None:
        category = Her2TriageCategory.MANUAL_REVIEW
    elif result.path is ModalityPath.HE_ONLY:
        category = Her2TriageCategory.CONFIRM_WITH_IHC
    elif result.path is ModalityPath.IHC_ONLY:
        category = Her2TriageCategory.CONFIRM_WITHOUT_HE
    elif result.score is Her2Score.TWO:
        category = Her2TriageCategory.ISH_REQUIRED
    else:
        category = Her2TriageCategory.PATHOLOGIST_CONFIRMATION
    text = _TEXTS[category].format(score=result.score)
    statement = HER2_DISCLAIMER + (f" {DEMO_DISCLAIMER}" if result.model.demo else "")
    return Triage(str(category), text, histology, statement)
