"""DICOMweb query/retrieve through dicomweb-client: QIDO-RS search, WADO-RS instances.

Instances are requested with ``transfer-syntax=*`` so the server sends them as stored
(no transcoding), written to the spool's ``.incoming`` folder, and stored through the
same :class:`~gateway.receive.store.InstanceStore` as every push. One instance is in
memory at a time (WADO-RS returns whole instances).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from pydicom.dataset import Dataset

from ..config import PacsNode
from ..errors import RemoteError, SpoolError
from ..receive.guard import store_guard
from ..receive.store import InstanceStore
from .dimse import Progress, RetrieveReport, StudyMatch

__all__ = ["dicomweb_find_studies", "dicomweb_retrieve_study"]

logger = logging.getLogger(__name__)


def _client(node: PacsNode) -> Any:
    from dicomweb_client.api import DICOMwebClient

    if node.dicomweb_url is None:
        raise RemoteError(f"PACS {node.name} has no dicomweb_url")
    headers = {"Authorization": f"Bearer {node.dicomweb_token}"} if node.dicomweb_token else None
    return DICOMwebClient(url=node.dicomweb_url, headers=headers)


def _value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or []
    return values[0] if values else None


def _name(value: Any) -> str | None:
    if isinstance(value, dict):
        return str(value.get("Alphabetic") or "") or None
    return None if value is None else str(value)


def dicomweb_find_studies(
    node: PacsNode,
    *,
    patient_id: str | None = None,
    accession_number: str | None = None,
    study_date: str | None = None,
    modality: str | None = None,
    study_uid: str | None = None,
) -> list[StudyMatch]:
    """QIDO-RS study search with the same filters as C-FIND."""
    import requests

    filters = {
        "PatientID": patient_id,
        "AccessionNumber": accession_number,
        "StudyDate": study_date,
        "ModalitiesInStudy": modality,
        "StudyInstanceUID": study_uid,
    }
    fields = ["StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]
    try:
        found = _client(node).search_for_studies(
            search_filters={k: v for k, v in filters.items() if v}, fields=fields
        )
    except requests.exceptions.RequestException as exc:
        raise RemoteError(f"PACS {node.name}: QIDO-RS search failed: {exc}") from exc
    out = []
    for item in found:
        uid = _value(item, "0020000D")
        if uid is None:
            continue
        modalities = item.get("00080061", {}).get("Value") or []
        series, instances = _value(item, "00201206"), _value(item, "00201208")
        out.append(
            StudyMatch(
                study_uid=str(uid),
                accession_number=_value(item, "00080050"),
                patient_id=_value(item, "00100020"),
                patient_name=_name(_value(item, "00100010")),
                study_date=_value(item, "00080020"),
                study_time=_value(item, "00080030"),
                modalities=tuple(str(m) for m in modalities),
                description=_value(item, "00081030"),
                series=int(series) if series is not None else None,
                instances=int(instances) if instances is not None else None,
            )
        )
    return out


def dicomweb_retrieve_study(
    node: PacsNode,
    study_uid: str,
    store: InstanceStore,
    progress: Progress | None = None,
) -> RetrieveReport:
    """Retrieve every instance of a study with WADO-RS and store it.

    Instances that fail (download or storage) are listed in the report; the others
    are kept.
    """
    import requests

    client = _client(node)
    try:
        listing = client.search_for_instances(study_instance_uid=study_uid)
    except requests.exceptions.RequestException as exc:
        raise RemoteError(f"PACS {node.name}: QIDO-RS instance search failed: {exc}") from exc
    report = RetrieveReport("dicomweb")
    total = len(listing)
    for index, item in enumerate(listing):
        series_uid = str(_value(item, "0020000E"))
        sop_uid = str(_value(item, "00080018"))
        try:
            dataset: Dataset = client.retrieve_instance(
                study_uid, series_uid, sop_uid, media_types=(("application/dicom", "*"),)
            )
            path = store.spool.incoming / f"wado-{uuid.uuid4().hex}.dcm"
            with store_guard(sop_uid, node.name) as outcome:
                try:
                    # The instance is in memory: its size is known before it is written.
                    pixels = dataset.get("PixelData")
                    store.spool.check_space(len(pixels) if pixels is not None else 0)
                    dataset.save_as(path, enforce_file_format=True)
                    store.store(path, str(dataset.SOPClassUID), sop_uid, None, node.sender)
                except OSError as exc:
                    raise SpoolError(f"cannot write the retrieved instance: {exc}") from None
                finally:
                    path.unlink(missing_ok=True)
                outcome.status = 0
            store.audit_refusal(None, sop_uid, outcome)
            if outcome.status != 0:
                raise RemoteError(f"not stored: status 0x{outcome.status:04X} {outcome.comment}")
            report.completed += 1
        except Exception as exc:  # one bad instance must not stop the others
            logger.warning(
                "DICOMweb instance not retrieved",
                extra={"sop_instance_uid": sop_uid, "error": str(exc)[:300]},
            )
            report.failed += 1
            report.failed_instances.append(sop_uid)
        if progress is not None:
            progress(report.completed, report.failed, 0, total - index - 1)
    return report
