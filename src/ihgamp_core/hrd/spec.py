"""What the HRD analysis applies to, without loading the model (routing reads it)."""

from __future__ import annotations

from ..analysis.contract import AnalysisName, AnalysisSpec, Applicability, InputKind, Stain

__all__ = ["HRD_APPLICABILITY", "HRD_SPEC"]

#: HRD reads every H&E slide of a case, of any organ (the model is pan-cancer).
HRD_APPLICABILITY = Applicability(stains=frozenset({Stain.HE}), inputs=InputKind.SLIDES)

#: The HRD analysis' name and applicability: all that routing needs.
HRD_SPEC = AnalysisSpec(AnalysisName.HRD, HRD_APPLICABILITY)
