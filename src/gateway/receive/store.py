"""Storing one received file: header check, spool, catalog. Shared by every receive path.

The C-STORE SCP, the C-STORE sub-operations of a C-GET and instances fetched over
DICOMweb all end here, so a retrieved instance is stored exactly like a pushed one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..catalog import Catalog, InstanceRecord
from ..spool import Spool
from .guard import DatasetMismatchError
from .validate import read_header

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

    def store(
        self, source: Path, sop_class_uid: str, sop_instance_uid: str, audit_id: int | None
    ) -> Stored:
        """Store ``source`` durably; it is moved into the spool (or deleted if a duplicate).

        Raises
        ------
        DiskFullError, SpoolError, CatalogError, DatasetMismatchError, UnreadableDatasetError
            Mapped to DICOM statuses by :func:`~gateway.receive.guard.store_guard`.
        """
        if self.accepted is not None and sop_class_uid not in self.accepted:
            raise DatasetMismatchError(
                f"SOP class {sop_class_uid} is not accepted (dicom.sop_classes)"
            )
        self.spool.check_space()
        header = read_header(source, sop_class_uid, sop_instance_uid)
        prepared = self.spool.prepare(source)
        try:
            current = self.catalog.current_instance(header.sop_instance_uid)
            if current is not None and current[1] == prepared.sha256:
                self.spool.discard(prepared)
                logger.info(
                    "duplicate instance acknowledged", extra={"sop_instance_uid": sop_instance_uid}
                )
                return Stored(
                    header.study_uid,
                    header.series_uid,
                    header.sop_instance_uid,
                    current[0],
                    True,
                    False,
                )
            version = 1 if current is None else current[0] + 1
            final = self.spool.commit(
                prepared, header.study_uid, header.series_uid, header.sop_instance_uid, version
            )
        except BaseException:
            self.spool.discard(prepared)
            raise
        if version > 1:
            logger.warning(
                "instance re-sent with different content; kept as a new version",
                extra={"sop_instance_uid": sop_instance_uid, "version": version},
            )
        record = InstanceRecord(
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
        result = self.catalog.record_instance(record, version, audit_id)
        if result.reopened:
            logger.info(
                "study reopened by a new slide instance", extra={"study_uid": header.study_uid}
            )
        return Stored(
            header.study_uid,
            header.series_uid,
            header.sop_instance_uid,
            version,
            False,
            result.reopened,
        )
