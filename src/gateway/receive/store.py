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
from functools import cached_property
from pathlib import Path

from ..catalog import Catalog, InstanceRecord
from ..catalog.dimse_audit import DimseAudit
from ..catalog.identity import (
    DEFAULT_KEY_NAME,
    IdentityKey,
    backfill_identity,
    check_key,
    studies_without_identity,
)
from ..config import DicomSettings, StudyAdditions
from ..errors import GatewayError, StudyConflictError
from ..metrics import INSTANCES_RECEIVED, STUDY_CONFLICTS, conflict_rule
from ..spool import PreparedFile, Spool
from .guard import SUCCESS, DatasetMismatchError, StoreOutcome
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
    identity : IdentityKey or Path, optional
        The site key for patient identity digests (one patient per study), or its file
        (read, or created, when the first instance is stored); default: the spool's key
        file.
    opener_only : bool
        Once a study has a result, only its first sender may add to it
        (``dicom.scored_study_additions = "opener"``).
    """

    def __init__(
        self,
        catalog: Catalog,
        spool: Spool,
        accepted: tuple[str, ...] | None = None,
        identity: IdentityKey | Path | None = None,
        opener_only: bool = False,
    ) -> None:
        self.catalog = catalog
        self.audit = DimseAudit(catalog)
        self.spool = spool
        self.accepted = set(accepted) if accepted is not None else None
        self.files = ReceiveFiles(spool.incoming, spool.check_space)
        self._identity = identity if identity is not None else spool.root / DEFAULT_KEY_NAME
        self.opener_only = opener_only

    @cached_property
    def identity(self) -> IdentityKey:
        """The site key (loaded, or created, on first use: `ihgamp find` needs none).

        Raises
        ------
        ConfigError
            When it is not the key the catalog's studies were recorded with.
        """
        if isinstance(self._identity, IdentityKey):
            return self._identity
        key = IdentityKey.load(self._identity)
        check_key(self.catalog, key, self._identity)
        return key

    @classmethod
    def for_settings(cls, settings: DicomSettings, catalog: Catalog, spool: Spool) -> InstanceStore:
        """The store of ``[dicom]``: accepted SOP classes, identity key, additions rule."""
        return cls(
            catalog,
            spool,
            settings.sop_classes,
            settings.patient_identity_key_file or spool.root / DEFAULT_KEY_NAME,
            settings.scored_study_additions is StudyAdditions.OPENER,
        )

    def store_received(
        self,
        dataset_path: str | Path,
        sop_class_uid: str,
        sop_instance_uid: str,
        audit_id: int | None,
        source: str | None = None,
    ) -> Stored:
        """Store a data set that pynetdicom streamed in (C-STORE SCP, C-GET).

        The data set's file was opened through :attr:`files` when the association was
        attached to it; a data set dropped while streaming (disk full) raises its error.
        """
        received = self.files.claim(dataset_path)
        if received.error is not None:
            raise received.error
        return self.store(received.path, sop_class_uid, sop_instance_uid, audit_id, source)

    def store(
        self,
        source: Path,
        sop_class_uid: str,
        sop_instance_uid: str,
        audit_id: int | None,
        sender: str | None = None,
    ) -> Stored:
        """Store ``source`` durably; it is moved into the spool (or deleted if not kept).

        ``sender`` is the calling AE title, or ``pacs:<name>`` for a retrieve.

        Raises
        ------
        DiskFullError, SpoolError, CatalogError, UidConflictError, StudyConflictError,
        DatasetMismatchError, UnreadableDatasetError
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
            header = read_header(prepared.path, sop_class_uid, sop_instance_uid, self.identity)
            prepared, final = self.spool.place(
                prepared, header.study_uid, header.series_uid, header.sop_instance_uid
            )
            outcome = self.catalog.record_instance(
                _record(header, prepared, final, sender), audit_id, opener_only=self.opener_only
            )
        except StudyConflictError as exc:
            self.spool.discard(prepared, final)
            STUDY_CONFLICTS.labels(conflict_rule(type(exc))).inc()
            raise
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

    def audit_refusal(
        self, audit_id: int | None, sop_instance_uid: str, outcome: StoreOutcome
    ) -> None:
        """Record a refused store in ``store_refusals`` (every receive path audits the same)."""
        if outcome.status == SUCCESS:
            return
        try:
            self.audit.record_refused_store(
                audit_id, sop_instance_uid, outcome.status, outcome.comment or ""
            )
        except Exception:
            logger.exception("cannot record the refused store in the audit")

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

        Raises
        ------
        ConfigError
            When the patient identity key is not the one the catalog was recorded with.
        """
        counts = {"recorded": 0, "known": 0, "quarantined": 0, "removed": 0}
        _ = self.identity  # load (or create) and check the site key now, not at a C-STORE
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
                header = read_header(
                    path, _sop_class(path), placement.sop_instance_uid, self.identity
                )
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
        self.backfill_identities()
        return counts

    def backfill_identities(self) -> int:
        """Give studies recorded before identities were kept the identity of an instance.

        Returns
        -------
        int
            How many studies got one.
        """
        import pydicom

        done = 0
        for study_uid, path in studies_without_identity(self.catalog):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception as exc:  # noqa: BLE001 - unreadable: the next instance sets it
                logger.warning(
                    "instance unreadable; the study's identity is set by its next instance",
                    extra={"study_uid": study_uid, "error": type(exc).__name__},
                )
                continue
            done += backfill_identity(
                self.catalog, study_uid, self.identity.identity(study_uid, ds)
            )
        if done:
            logger.info("patient identities recorded for earlier studies", extra={"studies": done})
        return done


def _record(
    header: InstanceHeader, prepared: PreparedFile, final: Path, sender: str | None = None
) -> InstanceRecord:
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
        patient=header.patient,
        source=sender,
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
