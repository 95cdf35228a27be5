"""The HRD analysis' codes (the shared ones: :mod:`ihgamp_core.report.codes`).

LOINC 107286-7 is "Homologous recombination deficiency status analysis [Presence] in
Tissue by Molecular genetics method". Our estimate is *not* a molecular method: the
Observation pairs the LOINC code with a local code and states in ``method`` and
``device`` that the value is an image-based AI estimate from H&E morphology.
"""

from __future__ import annotations

from pydicom.sr.coding import Code

from ..report.codes import local_code
from .result import Call
from .triage import TriageCategory

__all__ = [
    "CALL_CODES",
    "HRD_CALL",
    "HRD_PROBABILITY",
    "HRD_PROBABILITY_TILE",
    "HRD_SCORE",
    "LOINC_HRD",
    "LOINC_HRD_DISPLAY",
    "OPERATING_THRESHOLD",
    "PROCEDURE",
    "TRIAGE_CODES",
]

LOINC_HRD = "107286-7"
LOINC_HRD_DISPLAY = (
    "Homologous recombination deficiency status analysis [Presence] in Tissue by "
    "Molecular genetics method"
)

# -- DICOM SR concepts (TID 1500 content) ----------------------------------------------
PROCEDURE = local_code("HRD-EST", "HRD estimation from H&E whole-slide images")
HRD_PROBABILITY = local_code("HRD-P", "HRD probability (scarHRD >= 33), image-based estimate")

HRD_PROBABILITY_TILE = local_code("HRD-P-TILE", "Tile-level HRD probability, image-based estimate")
HRD_SCORE = local_code("HRD-S", "Continuous HRD score, image-based estimate")

OPERATING_THRESHOLD = local_code("HRD-T", "Operating threshold of the HRD probability")
HRD_CALL = local_code("HRD-CALL", "HRD estimate call")

CALL_CODES: dict[Call, Code] = {
    Call.HRD_LIKELY: local_code("HRD-LIKELY", "HRD likely"),
    Call.HRD_UNLIKELY: local_code("HRD-UNLIKELY", "HRD unlikely"),
    Call.NO_CALL: local_code("NO-CALL", "No call"),
}
TRIAGE_CODES: dict[str, Code] = {
    TriageCategory.PRIORITISE_TESTING: local_code(
        "TRI-PRIORITISE", "Prioritise confirmatory molecular testing"
    ),
    TriageCategory.USUAL_CRITERIA: local_code("TRI-USUAL", "Molecular testing per usual criteria"),
    TriageCategory.NOT_VALIDATED: local_code(
        "TRI-NOT-VALIDATED", "Model not validated for this histology"
    ),
    TriageCategory.MANUAL_REVIEW: local_code("TRI-MANUAL", "No result: manual review"),
}
