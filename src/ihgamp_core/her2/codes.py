"""The HER2 analysis' codes (the shared ones: :mod:`ihgamp_core.report.codes`).

HER2: LOINC 85319-2 "HER2 [Presence] in Breast cancer specimen by Immune stain", whose
answers are the LOINC answer list LL4396-9 (LA6111-4 "0", LA11841-6 "1+", LA11842-4
"2+", LA11843-2 "3+", LA11884-6 "Indeterminate"), as HL7's breast cancer data guide and
mCODE-style profiles use them. The Observation pairs it with a local code and states
that the value is an AI estimate (from H&E alone when the IHC is missing), not a
pathologist's reading of the stain. The same LA answer codes (scheme ``LN``) code the
score in the SR. Not chosen: 72383-3 ("HER2 [Presence] in Tissue by Immunoassay", an
immunoassay, not a stain), 18474-7 ("HER2 Ag [Presence] in Tissue by Immune stain",
any tissue; acceptable, less specific), 48676-1 ("HER2 [Interpretation] in Tissue",
the positive/negative/equivocal status, which needs ISH for 2+) and SNOMED CT
1381317004 ("Human epidermal growth factor receptor 2 low", a status this model
cannot establish without amplification status).
"""

from __future__ import annotations

from pydicom.sr.coding import Code

from ..analysis.contract import ModalityPath
from ..report.codes import QC_FLAGS, local_code

__all__ = [
    "HER2_FRACTION",
    "HER2_MISSING",
    "HER2_MISSING_CODES",
    "HER2_PATH",
    "HER2_PATH_CODES",
    "HER2_PROBABILITY",
    "HER2_PROCEDURE",
    "HER2_QC_FLAGS",
    "HER2_SCORE",
    "HER2_SCORE_CODES",
    "HER2_SEGMENT_CATEGORY",
    "HER2_SEGMENT_TYPES",
    "HER2_TRIAGE_CODES",
    "LOINC_HER2_IHC",
    "LOINC_HER2_IHC_DISPLAY",
    "LOINC_INDETERMINATE",
]

LOINC_HER2_IHC = "85319-2"
LOINC_HER2_IHC_DISPLAY = "HER2 [Presence] in Breast cancer specimen by Immune stain"

LOINC_INDETERMINATE = Code("LA11884-6", "LN", "Indeterminate")

#: LOINC answer list LL4396-9, by HER2 score label.
HER2_SCORE_CODES: dict[str, Code] = {
    "0": Code("LA6111-4", "LN", "0"),
    "1+": Code("LA11841-6", "LN", "1+"),
    "2+": Code("LA11842-4", "LN", "2+"),
    "3+": Code("LA11843-2", "LN", "3+"),
}
HER2_PROCEDURE = local_code("HER2-EST", "HER2 IHC score estimation from whole-slide images")

HER2_SCORE = local_code("HER2-SCORE", "HER2 IHC score, image-based AI estimate")
HER2_PROBABILITY: dict[str, Code] = {
    label: local_code(f"HER2-P{k}", f"Probability of HER2 IHC score {label}, image-based estimate")
    for k, label in enumerate(("0", "1+", "2+", "3+"))
}

HER2_FRACTION: dict[str, Code] = {
    label: local_code(f"HER2-F{k}", f"Fraction of tiles classified HER2 {label}")
    for k, label in enumerate(("0", "1+", "2+", "3+"))
}
HER2_PATH = local_code("HER2-PATH", "Modality path")

HER2_PATH_CODES: dict[ModalityPath, Code] = {
    ModalityPath.DUAL: local_code("PATH-DUAL", "H&E and HER2 IHC slides of the same block"),
    ModalityPath.HE_ONLY: local_code("PATH-HE-ONLY", "H&E only; IHC synthesised inside the model"),
    ModalityPath.IHC_ONLY: local_code(
        "PATH-IHC-ONLY", "IHC only; H&E synthesised inside the model"
    ),
}
HER2_MISSING = local_code("MISSING", "Missing modality")

HER2_MISSING_CODES: dict[str, Code] = {
    "ihc": local_code("IHC-MISSING", "HER2 IHC slide missing"),
    "he": local_code("HE-MISSING", "H&E slide missing"),
}
HER2_TRIAGE_CODES: dict[str, Code] = {
    "manual-review": local_code("TRI-MANUAL", "No result: manual review"),
    "confirm-with-ihc": local_code("TRI-ORDER-IHC", "Order HER2 IHC; pathologist confirmation"),
    "confirm-without-he": local_code("TRI-NO-HE", "Pathologist confirmation (no H&E slide)"),
    "ish-required": local_code("TRI-ISH", "Pathologist scoring and ISH for ERBB2 amplification"),
    "pathologist-confirmation": local_code("TRI-CONFIRM", "Pathologist confirmation of the score"),
}

HER2_QC_FLAGS: dict[str, Code] = {
    "no-usable-level": QC_FLAGS["no-usable-level"],
    "too-few-tiles": QC_FLAGS["too-few-tiles"],
}

#: Segmentation of the class map: SCT "Morphologically abnormal structure", and one local

#: type per score (no standard concept names "tissue with HER2 IHC score k").
HER2_SEGMENT_CATEGORY = Code("49755003", "SCT", "Morphologically abnormal structure")
HER2_SEGMENT_TYPES: dict[str, Code] = {
    label: local_code(f"HER2-T{k}", f"Tissue with HER2 IHC score {label} (AI estimate)")
    for k, label in enumerate(("0", "1+", "2+", "3+"))
}
