"""DIMSE query/retrieve against a PACS: C-FIND, C-MOVE, C-GET (pynetdicom).

C-MOVE asks the PACS to send the study to *our* AE, so it arrives through the running
listener like any push (the PACS must know our AE title, host and port). C-GET receives
the instances on the same association: storage sub-operations are accepted in the SCP role
and stored through the same :class:`~gateway.receive.store.InstanceStore` as every push.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt

from ..config import PacsNode
from ..errors import RemoteError
from ..receive.guard import SUCCESS, store_guard
from ..receive.server import TRANSFER_SYNTAXES, configure_pynetdicom
from ..receive.store import InstanceStore

__all__ = [
    "FIND_STUDY_ROOT",
    "GET_STUDY_ROOT",
    "MOVE_STUDY_ROOT",
    "Progress",
    "RetrieveReport",
    "SeriesMatch",
    "StudyMatch",
    "find_series",
    "find_studies",
    "get_study",
    "move_study",
]

logger = logging.getLogger(__name__)

FIND_STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2.1"
MOVE_STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2.2"
GET_STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2.3"

Progress = Callable[[int, int, int, int], None]
"""Called with (completed, failed, warning, remaining) sub-operations."""


@dataclass(frozen=True)
class StudyMatch:
    """One study found on a PACS (shown to operators; never logged)."""

    study_uid: str
    accession_number: str | None
    patient_id: str | None
    patient_name: str | None
    study_date: str | None
    study_time: str | None
    modalities: tuple[str, ...]
    description: str | None
    series: int | None
    instances: int | None


@dataclass(frozen=True)
class SeriesMatch:
    """One series of a study on a PACS."""

    series_uid: str
    modality: str | None
    number: int | None
    description: str | None
    instances: int | None


@dataclass
class RetrieveReport:
    """Outcome of one retrieve: sub-operation counts and the instances that failed."""

    method: str
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_instances: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every instance arrived."""
        return self.failed == 0 and not self.failed_instances


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(ds.get(keyword))
    except (TypeError, ValueError):
        return None


def _tls(node: PacsNode) -> tuple[ssl.SSLContext, str] | None:
    if node.tls_ca is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(node.tls_ca))
    if node.tls_certificate and node.tls_private_key:
        ctx.load_cert_chain(str(node.tls_certificate), str(node.tls_private_key))
    return ctx, str(node.host)


def _associate(ae: AE, node: PacsNode, **kwargs: Any) -> Any:
    assert node.host and node.port and node.ae_title  # noqa: S101 - validated by config
    assoc = ae.associate(
        node.host, node.port, ae_title=node.ae_title, tls_args=_tls(node), **kwargs
    )
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else "is unreachable"
        raise RemoteError(
            f"PACS {node.name} ({node.ae_title}@{node.host}:{node.port}) {why}; check the "
            f"address and that it lists our AE title {ae.ae_title} as a known modality"
        )
    return assoc


def _ae(calling_ae: str, timeout_s: float) -> AE:
    configure_pynetdicom()
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    return ae


def _find(node: PacsNode, calling_ae: str, query: Dataset, timeout_s: float) -> Iterator[Dataset]:
    ae = _ae(calling_ae, timeout_s)
    ae.add_requested_context(FIND_STUDY_ROOT)
    assoc = _associate(ae, node)
    try:
        for status, identifier in assoc.send_c_find(query, FIND_STUDY_ROOT):
            if not status:
                raise RemoteError(f"PACS {node.name}: no answer to C-FIND (timeout or abort)")
            code = int(status.Status)
            if code in (0xFF00, 0xFF01) and identifier is not None:
                yield identifier
            elif code != SUCCESS:
                raise RemoteError(f"PACS {node.name}: C-FIND failed with status 0x{code:04X}")
    finally:
        if assoc.is_established:
            assoc.release()


def find_studies(
    node: PacsNode,
    calling_ae: str,
    *,
    patient_id: str | None = None,
    accession_number: str | None = None,
    study_date: str | None = None,
    modality: str | None = None,
    study_uid: str | None = None,
    timeout_s: float = 60.0,
) -> list[StudyMatch]:
    """C-FIND at study level (Study Root).

    Parameters
    ----------
    node : PacsNode
        The PACS.
    calling_ae : str
        Our AE title.
    patient_id, accession_number, study_uid : str, optional
        Exact matches.
    study_date : str, optional
        DICOM date or range, e.g. ``20260101-20260131`` or ``20260105-``.
    modality : str, optional
        Modalities in Study (``SM`` for slides).
    timeout_s : float
        Network timeout.
    """
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = study_uid or ""
    q.AccessionNumber = accession_number or ""
    q.PatientID = patient_id or ""
    q.PatientName = ""
    q.StudyDate = study_date or ""
    q.StudyTime = ""
    q.ModalitiesInStudy = modality or ""
    q.StudyDescription = ""
    q.NumberOfStudyRelatedSeries = ""
    q.NumberOfStudyRelatedInstances = ""
    out = []
    for ds in _find(node, calling_ae, q, timeout_s):
        uid = _text(ds, "StudyInstanceUID")
        if uid is None:
            continue
        modalities = ds.get("ModalitiesInStudy") or []
        if isinstance(modalities, str):
            modalities = [modalities]
        out.append(
            StudyMatch(
                study_uid=uid,
                accession_number=_text(ds, "AccessionNumber"),
                patient_id=_text(ds, "PatientID"),
                patient_name=_text(ds, "PatientName"),
                study_date=_text(ds, "StudyDate"),
                study_time=_text(ds, "StudyTime"),
                modalities=tuple(str(m) for m in modalities),
                description=_text(ds, "StudyDescription"),
                series=_int(ds, "NumberOfStudyRelatedSeries"),
                instances=_int(ds, "NumberOfStudyRelatedInstances"),
            )
        )
    return out


def find_series(
    node: PacsNode, calling_ae: str, study_uid: str, timeout_s: float = 60.0
) -> list[SeriesMatch]:
    """C-FIND at series level for one study."""
    q = Dataset()
    q.QueryRetrieveLevel = "SERIES"
    q.StudyInstanceUID = study_uid
    q.SeriesInstanceUID = ""
    q.Modality = ""
    q.SeriesNumber = ""
    q.SeriesDescription = ""
    q.NumberOfSeriesRelatedInstances = ""
    out = []
    for ds in _find(node, calling_ae, q, timeout_s):
        uid = _text(ds, "SeriesInstanceUID")
        if uid is not None:
            out.append(
                SeriesMatch(
                    uid,
                    _text(ds, "Modality"),
                    _int(ds, "SeriesNumber"),
                    _text(ds, "SeriesDescription"),
                    _int(ds, "NumberOfSeriesRelatedInstances"),
                )
            )
    return out


def _retrieve_query(study_uid: str) -> Dataset:
    q = Dataset()
    q.QueryRetrieveLevel = "STUDY"
    q.StudyInstanceUID = study_uid
    return q


def _track(
    report: RetrieveReport,
    node: PacsNode,
    responses: Any,
    progress: Progress | None,
    move_destination: str | None = None,
) -> None:
    """Follow C-MOVE/C-GET responses: counts while pending, failures at the end."""
    for status, identifier in responses:
        if not status:
            raise RemoteError(f"PACS {node.name}: no answer to the retrieve (timeout or abort)")
        code = int(status.Status)
        report.completed = int(status.get("NumberOfCompletedSuboperations", report.completed))
        report.failed = int(status.get("NumberOfFailedSuboperations", report.failed))
        report.warning = int(status.get("NumberOfWarningSuboperations", report.warning))
        remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
        if progress is not None:
            progress(report.completed, report.failed, report.warning, remaining)
        if code == 0xA801:
            raise RemoteError(
                f"PACS {node.name} does not know the move destination; add our AE title, host "
                "and port to its list of DICOM modalities (status 0xA801)"
            )
        if code in (0xFF00, 0xFF01):  # pending
            continue
        if identifier is not None and "FailedSOPInstanceUIDList" in identifier:
            failed = identifier.FailedSOPInstanceUIDList
            values = failed if isinstance(failed, list | tuple) else [failed]
            report.failed_instances = [str(u) for u in values if str(u)]
        if code not in (SUCCESS, 0xB000) and report.completed == 0:
            hint = ""
            if move_destination is not None:  # some PACS answer 0xC000 for an unknown one
                hint = (
                    f"; if it does not know the move destination {move_destination}, add "
                    "our AE title, host and port to its list of DICOM modalities"
                )
            raise RemoteError(f"PACS {node.name}: retrieve failed with status 0x{code:04X}{hint}")
        if code not in (SUCCESS, 0xB000) and report.failed == 0:
            report.failed = max(1, len(report.failed_instances))  # failure without counts


def move_study(
    node: PacsNode,
    calling_ae: str,
    destination_ae: str,
    study_uid: str,
    progress: Progress | None = None,
    timeout_s: float = 600.0,
) -> RetrieveReport:
    """C-MOVE a study to ``destination_ae`` (our listener).

    Raises
    ------
    RemoteError
        Unreachable PACS, unknown move destination (0xA801, with the fix), other failures.
    """
    ae = _ae(calling_ae, timeout_s)
    ae.add_requested_context(MOVE_STUDY_ROOT)
    assoc = _associate(ae, node)
    report = RetrieveReport("move")
    try:
        responses = assoc.send_c_move(_retrieve_query(study_uid), destination_ae, MOVE_STUDY_ROOT)
        _track(report, node, responses, progress, destination_ae)
    finally:
        if assoc.is_established:
            assoc.release()
    return report


def get_study(
    node: PacsNode,
    calling_ae: str,
    study_uid: str,
    store: InstanceStore,
    sop_classes: tuple[str, ...],
    progress: Progress | None = None,
    timeout_s: float = 600.0,
) -> RetrieveReport:
    """C-GET a study; the instances arrive on this association and are stored.

    One presentation context per SOP class and transfer syntax lets the PACS send every
    instance in the transfer syntax it is stored in, so nothing is transcoded.
    """
    ae = _ae(calling_ae, timeout_s)
    ae.add_requested_context(GET_STUDY_ROOT)
    roles = []
    for sop_class in sop_classes:
        for syntax in TRANSFER_SYNTAXES:
            ae.add_requested_context(sop_class, [syntax])
        roles.append(build_role(sop_class, scp_role=True))
    report = RetrieveReport("get")

    def on_store(event: Any) -> Dataset:
        request = event.request
        sop_uid = str(request.AffectedSOPInstanceUID)
        with store_guard(sop_uid, node.ae_title or node.name) as outcome:
            store.store_received(
                event.dataset_path,
                str(request.AffectedSOPClassUID),
                sop_uid,
                None,
                node.sender,
            )
            outcome.status = SUCCESS
        store.audit_refusal(None, sop_uid, outcome)
        return outcome.response()

    assoc = _associate(ae, node, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    store.files.attach(assoc)  # instances stream into the spool, not a temporary folder
    try:
        _track(report, node, assoc.send_c_get(_retrieve_query(study_uid), GET_STUDY_ROOT), progress)
    finally:
        if assoc.is_established:
            assoc.release()
        store.files.discard_owned(assoc, assoc.dul)
    return report
