"""Storing one received file: check, spool, catalog. Shared by every receive path.

The C-STORE SCP, the C-STORE sub-operations of a C-GET and instances fetched over
DICOMweb all end here, so a retrieved instance is stored exactly like a pushed one.

One transfer = one unique spool file and one catalog transaction (:mod:`gateway.spool`
explains the steps). The catalog decides, in that transaction, whether the instance is
new, a new version of an instance of the same series, a duplicate (same content: the
transfer's own file is deleted and the sender gets success), or a conflict (the SOP
Instance UID belongs to another study or series: refused, nothing moved).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..catalog import Catalog, InstanceRecord
from ..errors import GatewayError
from ..metrics import INSTANCES_RECEIVED
from ..spool import PreparedFile, Spool
from .guard import DatasetMismatchError
from .incoming import ReceiveFiles
from .validate import InstanceHeader, read_header

__all__ = ["InstanceStore", "Stored"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stored:
    """What happened to one file."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    version: int
    duplicate: bool
    reopened: bool


class InstanceStore:
    """Validate, spool and record files.

    Parameters
    ----------
    catalog : Catalog
        The catalog.
    spool : Spool
        The spool.
    accepted : tuple of str, optional
        SOP classes stored; others are refused (the SCP already refuses them at
        negotiation; retrieves over DICOMweb rely on this check).
    """

    def __init__(
        self, catalog: Catalog, spool: Spool, accepted: tuple[str, ...] | None = None
    ) -> None:
        self.catalog = catalog
        self.spool = spool
        self.accepted = set(accepted) if accepted is not None else None
        self.files = ReceiveFiles(spool.incoming, spool.check_space)

    def store_received(
        self,
        dataset_path: str | Path,
        sop_class_uid: str,
        sop_instance_uid: str,
        audit_id: int | None,
    ) -> Stored:
        """Store a data set that pynetdicom streamed in (C-STORE SCP, C-GET).

        The data set's file was opened through :attr:`files` when the association was
        attached to it; a data set dropped while streaming (disk full) raises its error.
        """
        received = self.files.claim(dataset_path)
        if received.error is not None:
            raise received.error
        return self.store(received.path, sop_class_uid, sop_instance_uid, audit_id)

    def store(
        self, source: Path, sop_class_uid: str, sop_instance_uid: str, audit_id: int | None
    ) -> Stored:
        """Store ``source`` durably; it is moved into the spool (or deleted if not kept).

        Raises
        ------
        DiskFullError, SpoolError, CatalogError, UidConflictError, DatasetMismatchError,
        UnreadableDatasetError
            Mapped to DICOM statuses by :func:`~gateway.receive.guard.store_guard`.
        """
        if self.accepted is not None and sop_class_uid not in self.accepted:
            Path(source).unlink(missing_ok=True)
            raise DatasetMismatchError(
                f"SOP class {sop_class_uid} is not accepted (dicom.sop_classes)"
            )
        prepared = self.spool.prepare(source)
        final: Path | None = None
        try:
            self.spool.check_space()
            header = read_header(prepared.path, sop_class_uid, sop_instance_uid)
            prepared, final = self.spool.place(
                prepared, header.study_uid, header.series_uid, header.sop_instance_uid
            )
            outcome = self.catalog.record_instance(_record(header, prepared, final), audit_id)
        except BaseException:
            self.spool.discard(prepared, final)
            raise
        INSTANCES_RECEIVED.inc()
        if outcome.duplicate:
            self.spool.discard(prepared, final)
            logger.info(
                "duplicate instance acknowledged", extra={"sop_instance_uid": sop_instance_uid}
            )
        else:
            self.spool.settle(prepared)
            if outcome.version > 1:
                logger.warning(
                    "instance re-sent with different content; kept as a new version",
                    extra={"sop_instance_uid": sop_instance_uid, "version": outcome.version},
                )
            if outcome.reopened:
                logger.info(
                    "study reopened by a new slide instance", extra={"study_uid": header.study_uid}
                )
        return Stored(
            header.study_uid,
            header.series_uid,
            header.sop_instance_uid,
            outcome.version,
            outcome.duplicate,
            outcome.reopened,
        )

    def recover(self) -> dict[str, int]:
        """Reconcile what a crash left in the spool, then empty ``.incoming``.

        A file linked to its final name but not recorded (the crash came between the
        two, so it was never acknowledged) is recorded when it is complete and valid, and
        quarantined otherwise; the sender re-sends what it did not get acknowledged, and
        the re-send is then a duplicate.

        Returns
        -------
        dict
            How many placements were ``recorded``, already ``known``, ``quarantined``,
            and how many partial files were ``removed``.
        """
        counts = {"recorded": 0, "known": 0, "quarantined": 0, "removed": 0}
        for placement in self.spool.placements():
            path = placement.final
            if self.catalog.has_instance_path(str(path)):
                counts["known"] += 1
                placement.placing.unlink(missing_ok=True)
                continue
            if not path.exists():  # crashed before the link: the .placing file is whole
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    placement.placing.rename(path)
                except OSError:
                    continue  # left for clean_incoming: never acknowledged
            try:
                header = read_header(path, _sop_class(path), placement.sop_instance_uid)
                if (header.study_uid, header.series_uid) != (
                    placement.study_uid,
                    placement.series_uid,
                ):
                    raise DatasetMismatchError("file does not match its placement")
                prepared = PreparedFile(path, path.stat().st_size, _sha256(path))
                outcome = self.catalog.record_instance(_record(header, prepared, path), None)
                if outcome.duplicate:
                    path.unlink(missing_ok=True)
                counts["recorded"] += 1
            except (GatewayError, OSError) as exc:
                self.spool.quarantine(path, str(exc))
                counts["quarantined"] += 1
            placement.placing.unlink(missing_ok=True)
        counts["removed"] = self.spool.clean_incoming()
        if counts["recorded"] or counts["quarantined"]:
            logger.warning("spool reconciled after an interrupted run", extra=counts)
        return counts


def _record(header: InstanceHeader, prepared: PreparedFile, final: Path) -> InstanceRecord:
    return InstanceRecord(
        study_uid=header.study_uid,
        series_uid=header.series_uid,
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid,
        transfer_syntax_uid=header.transfer_syntax_uid,
        modality=header.modality,
        accession_number=header.accession_number,
        image_flavor=header.image_flavor,
        pixel_spacing_um=header.pixel_spacing_um,
        path=str(final),
        size=prepared.size,
        sha256=prepared.sha256,
    )


def _sop_class(path: Path) -> str:
    import pydicom

    try:
        meta = pydicom.filereader.read_file_meta_info(path)
        return str(meta.MediaStorageSOPClassUID)
    except Exception:  # noqa: BLE001 - read_header gives the proper refusal next
        return ""


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 * 2**20):
            digest.update(chunk)
    return digest.hexdigest()
