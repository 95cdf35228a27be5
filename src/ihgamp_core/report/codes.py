"""The codes every analysis' reports share.

Standard codes where a standard concept exists (DCM, SCT, LOINC, UCUM, HL7); everything
else in one declared private scheme, ``99IHGAMP`` in DICOM (declared in the SR's Coding
Scheme Identification Sequence) and ``urn:ihgamp:codes`` in FHIR.

Each analysis keeps its own codes in its folder (``hrd/codes.py``,
``her2/codes.py``), made with :func:`local_code`.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

__all__ = [
    "DCM_COMMENT",
    "FHIR_INTERPRETATION",
    "FHIR_LOCAL",
    "LOINC",
    "PRIVATE_SCHEME",
    "QC_FLAG",
    "QC_FLAGS",
    "TRIAGE",
    "UCUM_NO_UNITS",
    "UCUM_SCORE",
    "V3_AIAST",
    "V3_OBSERVATION_VALUE",
    "coding_scheme_identification",
    "local_code",
]

PRIVATE_SCHEME = "99IHGAMP"
FHIR_LOCAL = "urn:ihgamp:codes"

LOINC = "http://loinc.org"
V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
V3_AIAST = ("AIAST", "Artificial Intelligence asserted")
FHIR_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def local_code(value: str, meaning: str) -> Code:
    """A code of the private scheme (``99IHGAMP``)."""
    return Code(value, PRIVATE_SCHEME, meaning)


TRIAGE = local_code("TRIAGE", "Triage recommendation")
QC_FLAG = local_code("QC", "Quality control flag")
DCM_COMMENT = Code("121106", "DCM", "Comment")
UCUM_NO_UNITS = Code("1", "UCUM", "no units")
UCUM_SCORE = Code("{score}", "UCUM", "score")

#: QC concepts analyses share, by flag value.
QC_FLAGS: dict[str, Code] = {
    "no-usable-level": local_code("QC-NO-20X", "No 20x-equivalent pyramid level"),
    "too-few-tiles": local_code("QC-FEW-TILES", "Too few tissue tiles"),
    "embedding-norm-out-of-range": local_code(
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
