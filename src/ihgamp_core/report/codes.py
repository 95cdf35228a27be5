"""Every code the reports use, in one place.

Standard codes where a standard concept exists (DCM, SCT, LOINC, UCUM, HL7); everything
else in one declared private scheme, ``99IHGAMP`` in DICOM (declared in the SR's Coding
Scheme Identification Sequence) and ``urn:ihgamp:codes`` in FHIR.

LOINC 107286-7 is "Homologous recombination deficiency status analysis [Presence] in
Tissue by Molecular genetics method". Our estimate is *not* a molecular method: the
Observation pairs the LOINC code with a local code and states in ``method`` and
``device`` that the value is an image-based AI estimate from H&E morphology.

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

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from ..analysis.contract import ModalityPath
from ..result import Call, QCFlag

__all__ = [
    "CALL_CODES",
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
    "DCM_COMMENT",
    "FHIR_INTERPRETATION",
    "FHIR_LOCAL",
    "HRD_CALL",
    "HRD_PROBABILITY",
    "HRD_PROBABILITY_TILE",
    "HRD_SCORE",
    "LOINC",
    "LOINC_HRD",
    "LOINC_HRD_DISPLAY",
    "OPERATING_THRESHOLD",
    "PRIVATE_SCHEME",
    "PROCEDURE",
    "QC_FLAG",
    "QC_FLAGS",
    "TRIAGE",
    "TRIAGE_CODES",
    "UCUM_NO_UNITS",
    "UCUM_SCORE",
    "V3_AIAST",
    "V3_OBSERVATION_VALUE",
    "coding_scheme_identification",
]

PRIVATE_SCHEME = "99IHGAMP"
FHIR_LOCAL = "urn:ihgamp:codes"

LOINC = "http://loinc.org"
LOINC_HRD = "107286-7"
LOINC_HRD_DISPLAY = (
    "Homologous recombination deficiency status analysis [Presence] in Tissue by "
    "Molecular genetics method"
)
V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
V3_AIAST = ("AIAST", "Artificial Intelligence asserted")
FHIR_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def _local(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning)


# -- DICOM SR concepts (TID 1500 content) ----------------------------------------------
PROCEDURE = _local("HRD-EST", "HRD estimation from H&E whole-slide images")
HRD_PROBABILITY = _local("HRD-P", "HRD probability (scarHRD >= 33), image-based estimate")
HRD_PROBABILITY_TILE = _local("HRD-P-TILE", "Tile-level HRD probability, image-based estimate")
HRD_SCORE = _local("HRD-S", "Continuous HRD score, image-based estimate")
OPERATING_THRESHOLD = _local("HRD-T", "Operating threshold of the HRD probability")
HRD_CALL = _local("HRD-CALL", "HRD estimate call")
TRIAGE = _local("TRIAGE", "Triage recommendation")
QC_FLAG = _local("QC", "Quality control flag")
DCM_COMMENT = Code("121106", "DCM", "Comment")
UCUM_NO_UNITS = Code("1", "UCUM", "no units")
UCUM_SCORE = Code("{score}", "UCUM", "score")

CALL_CODES: dict[Call, Code] = {
    Call.HRD_LIKELY: _local("HRD-LIKELY", "HRD likely"),
    Call.HRD_UNLIKELY: _local("HRD-UNLIKELY", "HRD unlikely"),
    Call.NO_CALL: _local("NO-CALL", "No call"),
}

TRIAGE_CODES: dict[str, Code] = {
    "prioritise-testing": _local("TRI-PRIORITISE", "Prioritise confirmatory molecular testing"),
    "usual-criteria": _local("TRI-USUAL", "Molecular testing per usual criteria"),
    "not-validated": _local("TRI-NOT-VALIDATED", "Model not validated for this histology"),
    "manual-review": _local("TRI-MANUAL", "No result: manual review"),
}

QC_FLAGS: dict[QCFlag, Code] = {
    QCFlag.NO_USABLE_LEVEL: _local("QC-NO-20X", "No 20x-equivalent pyramid level"),
    QCFlag.TOO_FEW_TILES: _local("QC-FEW-TILES", "Too few tissue tiles"),
    QCFlag.EMBEDDING_NORM_OUT_OF_RANGE: _local(
        "QC-NORM", "Embedding norm outside the reference range"
    ),
}


# -- HER2 -----------------------------------------------------------------------------
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
HER2_PROCEDURE = _local("HER2-EST", "HER2 IHC score estimation from whole-slide images")
HER2_SCORE = _local("HER2-SCORE", "HER2 IHC score, image-based AI estimate")
HER2_PROBABILITY: dict[str, Code] = {
    label: _local(f"HER2-P{k}", f"Probability of HER2 IHC score {label}, image-based estimate")
    for k, label in enumerate(("0", "1+", "2+", "3+"))
}
HER2_FRACTION: dict[str, Code] = {
    label: _local(f"HER2-F{k}", f"Fraction of tiles classified HER2 {label}")
    for k, label in enumerate(("0", "1+", "2+", "3+"))
}
HER2_PATH = _local("HER2-PATH", "Modality path")
HER2_PATH_CODES: dict[ModalityPath, Code] = {
    ModalityPath.DUAL: _local("PATH-DUAL", "H&E and HER2 IHC slides of the same block"),
    ModalityPath.HE_ONLY: _local("PATH-HE-ONLY", "H&E only; IHC synthesised inside the model"),
    ModalityPath.IHC_ONLY: _local("PATH-IHC-ONLY", "IHC only; H&E synthesised inside the model"),
}
HER2_MISSING = _local("MISSING", "Missing modality")
HER2_MISSING_CODES: dict[str, Code] = {
    "ihc": _local("IHC-MISSING", "HER2 IHC slide missing"),
    "he": _local("HE-MISSING", "H&E slide missing"),
}
HER2_TRIAGE_CODES: dict[str, Code] = {
    "manual-review": _local("TRI-MANUAL", "No result: manual review"),
    "confirm-with-ihc": _local("TRI-ORDER-IHC", "Order HER2 IHC; pathologist confirmation"),
    "confirm-without-he": _local("TRI-NO-HE", "Pathologist confirmation (no H&E slide)"),
    "ish-required": _local("TRI-ISH", "Pathologist scoring and ISH for ERBB2 amplification"),
    "pathologist-confirmation": _local("TRI-CONFIRM", "Pathologist confirmation of the score"),
}
HER2_QC_FLAGS: dict[str, Code] = {
    "no-usable-level": QC_FLAGS[QCFlag.NO_USABLE_LEVEL],
    "too-few-tiles": QC_FLAGS[QCFlag.TOO_FEW_TILES],
}
#: Segmentation of the class map: SCT "Morphologically abnormal structure", and one local
#: type per score (no standard concept names "tissue with HER2 IHC score k").
HER2_SEGMENT_CATEGORY = Code("49755003", "SCT", "Morphologically abnormal structure")
HER2_SEGMENT_TYPES: dict[str, Code] = {
    label: _local(f"HER2-T{k}", f"Tissue with HER2 IHC score {label} (AI estimate)")
    for k, label in enumerate(("0", "1+", "2+", "3+"))
}


def coding_scheme_identification() -> Dataset:
    """Return the Coding Scheme Identification item declaring ``99IHGAMP``."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "IHGAMP gateway local codes"
    item.CodingSchemeVersion = "1"
    item.CodingSchemeResponsibleOrganization = "IHGAMP pathology gateway project"
    return item
