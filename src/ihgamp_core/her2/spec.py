"""What the HER2 analysis applies to, without loading the model (no torch import).

Routing runs on receiver nodes, which never import torch; they read this declaration.
"""

from __future__ import annotations

from ..analysis.contract import AnalysisName, AnalysisSpec, Applicability, InputKind, Stain

__all__ = ["HER2_APPLICABILITY", "HER2_SPEC"]

#: HER2 reads breast H&E slides with the HER2 IHC slide of the same block when present.
HER2_APPLICABILITY = Applicability(
    stains=frozenset({Stain.HE, Stain.IHC_HER2}),
    inputs=InputKind.HE_WITH_OPTIONAL_IHC,
    body_parts=frozenset({"BREAST"}),
)

#: The HER2 analysis' name and applicability: all that routing needs.
HER2_SPEC = AnalysisSpec(AnalysisName.HER2, HER2_APPLICABILITY)
