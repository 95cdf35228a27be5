r"""An analysis result as an HL7 v2.5.1 ``ORU^R01`` message, built and checked with hl7apy.

One message per result and HL7 v2 destination (MSH-3 to MSH-6 are the destination's),
from the same report every other output is built from, whatever the analysis:

* ``PID``: the patient from the DICOM header (PID-3 the Patient ID with its issuer as
  assigning authority, PID-5 name, PID-7 birth date, PID-8 sex);
* ``OBR``: the analysis' observation code as the universal service, the accession number
  as filler order number (OBR-3), result status ``F`` or ``C`` (a result that replaces an
  earlier one of the same request: a correction);
* ``NTE``: the triage text and the intended-use statement (with the DEMO notice);
* ``OBX``: the call (CWE), the headline value and the operating threshold when the
  analysis has them (NM), the QC flags, the model and, for DEMO models, the DEMO notice
  (ST); each with the OBR's result status.

Text from the DICOM header or the report is escaped (``\F\ \S\ \T\ \R\ \E\``), so the
message is valid HL7 whatever the input carried; hl7apy validates it against the 2.5.1
message structure before it is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from pydicom.multival import MultiValue

from ihgamp_core.report.codes import PRIVATE_SCHEME
from ihgamp_core.report.triage import DEMO_DISCLAIMER

if TYPE_CHECKING:
    from ihgamp_core.analysis import AnalysisReport
    from ihgamp_core.report import ReportContext

    from ..config import Hl7v2Node

__all__ = ["VERSION", "build_oru_r01", "control_id", "escape"]

VERSION = "2.5.1"
_LOINC = "http://loinc.org"
_SEX = {"M": "M", "F": "F", "O": "O"}
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def escape(text: str) -> str:
    """HL7 escape sequences for the delimiters; line breaks become spaces."""
    for raw, escaped in _ESCAPES:
        text = text.replace(raw, escaped)
    return " ".join(text.split())


def control_id(result_key: str, destination: str) -> str:
    """MSH-10: the same for every try of one result to one destination (at most 20)."""
    return hashlib.sha256(f"{result_key}|{destination}".encode()).hexdigest()[:20]


def _timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S+0000")


def _name(dicom_name: str) -> str:
    """DICOM PN (family^given^middle^prefix^suffix) as XPN (family^given^middle^suffix^prefix)."""
    parts = [*dicom_name.split("=", 1)[0].split("^"), "", "", "", "", ""][:5]
    family, given, middle, prefix, suffix = (escape(p) for p in parts)
    return "^".join((family, given, middle, suffix, prefix)).rstrip("^")


def _single(value: object) -> str:
    """A header value as text: the first of a multi-valued one, '' when absent."""
    if isinstance(value, MultiValue):
        value = value[0] if len(value) else ""
    return str(value or "")


def _code(system: str, code: str, text: str) -> str:
    scheme = "LN" if system == _LOINC else PRIVATE_SCHEME
    return f"{escape(code)}^{escape(text)}^{scheme}"


def _local(code: str, text: str) -> str:
    return _code(PRIVATE_SCHEME, code, text)


def build_oru_r01(
    report: AnalysisReport,
    context: ReportContext,
    node: Hl7v2Node,
    corrected: bool,
    now: dt.datetime,
) -> bytes:
    """The ``ORU^R01`` of one result for one destination, ER7-encoded (segments end in CR).

    Parameters
    ----------
    report : AnalysisReport
        The result's report.
    context : ReportContext
        The source DICOM headers (patient, accession).
    node : Hl7v2Node
        The destination (MSH applications and facilities, processing id).
    corrected : bool
        The result replaces an earlier one of the same request: status ``C``.
    now : datetime
        The message time (aware).

    Raises
    ------
    ValueError
        If the study has no Patient ID (PID-3 is required), or hl7apy finds the message
        invalid.
    """
    patient = context.patient_id
    if not patient:
        raise ValueError("the study has no Patient ID; an ORU^R01 needs PID-3")
    status = "C" if corrected else "F"
    outcome = report.outcome
    header = context.first
    message = Message("ORU_R01", version=VERSION, validation_level=VALIDATION_LEVEL.STRICT)
    msh = message.msh
    msh.msh_3 = node.sending_application
    msh.msh_4 = node.sending_facility
    msh.msh_5 = node.receiving_application
    msh.msh_6 = node.receiving_facility
    msh.msh_7 = _timestamp(now)
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = control_id(report.key, node.name)
    msh.msh_11 = node.processing_id
    msh.msh_12 = VERSION
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    pid = result.add_group("ORU_R01_PATIENT").pid
    pid.pid_1 = "1"
    issuer = context.issuer_of_patient_id
    pid.pid_3 = f"{escape(patient)}^^^{escape(issuer)}" if issuer else escape(patient)
    pid.pid_5 = _name(_single(header.get("PatientName"))) or '""'
    birth = str(header.get("PatientBirthDate", "") or "")
    if len(birth) == 8 and birth.isdigit():
        pid.pid_7 = birth
    sex = _SEX.get(str(header.get("PatientSex", "") or "").upper())
    if sex:
        pid.pid_8 = sex
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    obr = order.obr
    obr.obr_1 = "1"
    accession = context.accession_number
    if accession:
        obr.obr_3 = escape(accession)
    service = _code(*report.observation_code, str(outcome.analysis).upper())
    obr.obr_4 = service
    obr.obr_7 = _timestamp(now)
    obr.obr_22 = _timestamp(now)
    obr.obr_25 = status
    for index, text in enumerate((report.triage.text, report.triage.statement), 1):
        nte = order.add_segment("NTE")
        nte.nte_1 = str(index)
        nte.nte_3 = escape(text)
    rows = [("CWE", service, _local(outcome.call, outcome.call))]
    if outcome.value is not None:
        rows.append(("NM", _local("value", "Headline value"), f"{outcome.value:.6g}"))
    if outcome.threshold is not None:
        rows.append(("NM", _local("threshold", "Operating threshold"), f"{outcome.threshold:.6g}"))
    if outcome.qc_flags:
        rows.append(("ST", _local("qc-flags", "QC flags"), escape(", ".join(outcome.qc_flags))))
    rows.append(("ST", _local("model", "Model"), escape(outcome.model_key)))
    if outcome.demo:
        rows.append(("ST", _local("demo", "DEMO model"), escape(DEMO_DISCLAIMER)))
    for index, (kind, code, value) in enumerate(rows, 1):
        obx = order.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1 = str(index)
        obx.obx_2 = kind
        obx.obx_3 = code
        obx.obx_5 = value
        obx.obx_11 = status
        obx.obx_14 = _timestamp(now)
    message.validate()
    return str(message.to_er7()).encode()
