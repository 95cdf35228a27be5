"""HER2 as an analysis under the contract."""

from __future__ import annotations

from ..analysis.contract import Applicability, InputKind, Stain

__all__ = ["HER2_APPLICABILITY"]

#: HER2 reads breast H&E slides with the HER2 IHC slide of the same block when present.
HER2_APPLICABILITY = Applicability(
    stains=frozenset({Stain.HE, Stain.IHC_HER2}),
    inputs=InputKind.HE_WITH_OPTIONAL_IHC,
    body_parts=frozenset({"BREAST"}),
)
