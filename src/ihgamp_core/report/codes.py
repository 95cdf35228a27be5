"""Every code the reports use, in one place.

Standard codes where a standard concept exists (DCM, SCT, LOINC, UCUM, HL7); everything
else in one declared private scheme, ``99IHGAMP`` in DICOM (declared in the SR's Coding
Scheme Identification Sequence) and ``urn:ihgamp:codes`` in FHIR.

LOINC 107286-7 is "Homologous recombination deficiency status analysis [Presence] in
Tissue by Molecular genetics method". Our estimate is *not* a molecular method: the
Observation pairs the LOINC code with a local code and states in ``method`` and
``device`` that the value is an image-based AI estimate from H&E morphology.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from ..result import Call, QCFlag

__all__ = [
    "CALL_CODES",
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


def coding_scheme_identification() -> Dataset:
    """Return the Coding Scheme Identification item declaring ``99IHGAMP``."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "IHGAMP gateway local codes"
    item.CodingSchemeVersion = "1"
    item.CodingSchemeResponsibleOrganization = "IHGAMP pathology gateway project"
    return item
