"""One place that maps handler exceptions to DICOM statuses (like pynetdicom's ``attempt``).

Every C-STORE runs inside :func:`store_guard`. Whatever the handler raises becomes a
failure status with an Error Comment the sender can read, one log line without patient
data, and the association carries on with the next request.

======================================  ========  =========================================
exception                               status    meaning (PS3.4 Annex B.2.3)
======================================  ========  =========================================
:class:`~gateway.errors.DiskFullError`  0xA700    Refused: out of resources (disk floor)
:class:`~gateway.errors.SpoolError`     0xA701    Refused: out of resources (cannot write)
:class:`~gateway.errors.CatalogError`   0xA702    Refused: out of resources (catalog)
``InstanceConflictError``               0x0111    Duplicate SOP Instance (UID of another
                                                  study or series; PS3.7 Annex C)
``UidConflictError``                    0xC000    Cannot understand (series UID of
                                                  another study)
``StudyConflictError``                  0xC000    Cannot understand (another patient than
                                                  the study's; another sender after
                                                  scoring)
:class:`DatasetMismatchError`           0xA900    Data set does not match SOP class
:class:`UnreadableDatasetError`         0xC000    Cannot understand
any other exception                     0xA7FF    Refused: internal error, retry later
======================================  ========  =========================================
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydicom.dataset import Dataset

from ..errors import (
    CatalogError,
    DiskFullError,
    GatewayError,
    InstanceConflictError,
    SpoolError,
    StudyConflictError,
    UidConflictError,
)
from ..metrics import INSTANCES_REFUSED, refusal_status

__all__ = [
    "DatasetMismatchError",
    "StoreOutcome",
    "UnreadableDatasetError",
    "status_for",
    "store_guard",
]

logger = logging.getLogger(__name__)

SUCCESS = 0x0000


class DatasetMismatchError(GatewayError):
    """The data set does not match the SOP class it was sent as."""


class UnreadableDatasetError(GatewayError):
    """The data set cannot be parsed or lacks identifying attributes."""


_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (InstanceConflictError, 0x0111),
    (UidConflictError, 0xC000),
    (StudyConflictError, 0xC000),
    (DiskFullError, 0xA700),
    (SpoolError, 0xA701),
    (CatalogError, 0xA702),
    (DatasetMismatchError, 0xA900),
    (UnreadableDatasetError, 0xC000),
)
INTERNAL_ERROR = 0xA7FF
#: Every status a C-STORE is refused with (the metrics' label set).
REFUSAL_STATUSES = tuple(sorted({status for _, status in _STATUS} | {INTERNAL_ERROR}))


def status_for(exc: BaseException) -> int:
    """Return the failure status for an exception raised while storing."""
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return INTERNAL_ERROR


@dataclass
class StoreOutcome:
    """Filled in by the guarded block: the status to answer and an optional comment."""

    status: int = INTERNAL_ERROR
    comment: str | None = None

    def response(self) -> Dataset:
        """Return the C-STORE response status dataset."""
        ds = Dataset()
        ds.Status = self.status
        if self.comment:
            # LO: printable ASCII without backslash (a backslash would split the value).
            text = "".join(c if " " <= c <= "~" and c != "\\" else "?" for c in self.comment)
            ds.ErrorComment = text[:64]
        return ds


@contextmanager
def store_guard(sop_instance_uid: str, calling_ae: str) -> Iterator[StoreOutcome]:
    """Run a C-STORE handler body; turn any exception into a status.

    Parameters
    ----------
    sop_instance_uid : str
        For the log line (UIDs are not patient data).
    calling_ae : str
        For the log line.
    """
    outcome = StoreOutcome()
    try:
        yield outcome
    except Exception as exc:
        outcome.status = status_for(exc)
        # Our own errors carry a message meant for the sender; anything else is a bug
        # whose text (a library's message) is not the sender's business.
        if isinstance(exc, GatewayError):
            outcome.comment = str(exc) or type(exc).__name__
        else:
            outcome.comment = f"internal error ({type(exc).__name__}); retry later"
        INSTANCES_REFUSED.labels(refusal_status(outcome.status)).inc()
        level = logging.ERROR if outcome.status == INTERNAL_ERROR else logging.WARNING
        logger.log(
            level,
            "C-STORE refused",
            exc_info=outcome.status == INTERNAL_ERROR,
            extra={
                "status": f"0x{outcome.status:04X}",
                "reason": outcome.comment,
                "sop_instance_uid": sop_instance_uid,
                "calling_ae": calling_ae,
            },
        )
