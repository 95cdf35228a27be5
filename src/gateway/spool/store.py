r"""The spool: received instances as durable files, named by UID.

Layout::

    <spool>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm      version 1
    <spool>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.v2.dcm   a re-send with
                                                                            different content
    <spool>/.incoming/                                                       partial files

A file enters the spool in two steps. :meth:`Spool.prepare` brings the received data
into ``.incoming`` (a rename when it already lies on the same file system, else a copy),
hashes it and ``fsync``\\ s it. :meth:`Spool.commit` renames it to its final name and
``fsync``\\ s the folder, so after a crash a file is either complete under its final name
or absent. ``.incoming`` is emptied at start-up: whatever is there belonged to a
transfer that was never acknowledged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import DiskFullError, SpoolError

__all__ = ["PreparedFile", "Spool", "valid_uid"]

logger = logging.getLogger(__name__)

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_CHUNK = 4 * 1024 * 1024


def valid_uid(uid: str) -> bool:
    """Return whether ``uid`` is a syntactically valid DICOM UID (safe as a file name)."""
    return len(uid) <= 64 and bool(_UID_RE.match(uid))


@dataclass(frozen=True)
class PreparedFile:
    """A received file in ``.incoming``, hashed and on disk."""

    path: Path
    size: int
    sha256: str


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Durable storage of received instances.

    Parameters
    ----------
    root : Path
        Spool folder (created if needed).
    min_free_bytes : int
        Refuse new data when free space on the spool's file system is below this.
    """

    def __init__(self, root: Path, min_free_bytes: int = 0) -> None:
        self.root = Path(root)
        self.incoming = self.root / ".incoming"
        self.min_free_bytes = min_free_bytes
        try:
            self.incoming.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool at {self.root}: {exc}") from exc

    def clean_incoming(self) -> int:
        """Delete partial files left by interrupted transfers; return how many."""
        removed = 0
        for path in self.incoming.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            logger.warning(
                "removed partial files of unacknowledged transfers", extra={"count": removed}
            )
        return removed

    def free_bytes(self) -> int:
        """Return the free space on the spool's file system."""
        return shutil.disk_usage(self.root).free

    def check_space(self) -> None:
        """Raise :class:`DiskFullError` when free space is below the floor."""
        free = self.free_bytes()
        if free < self.min_free_bytes:
            raise DiskFullError(
                f"spool free space {free // 2**20} MiB is below the floor "
                f"{self.min_free_bytes // 2**20} MiB"
            )

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str, version: int) -> Path:
        """Return the final path of an instance version.

        Raises
        ------
        SpoolError
            If a UID is not a valid UID (which would make an unsafe path).
        """
        for uid in (study_uid, series_uid, sop_uid):
            if not valid_uid(uid):
                raise SpoolError(f"invalid UID {uid[:70]!r}")
        name = f"{sop_uid}.dcm" if version == 1 else f"{sop_uid}.v{version}.dcm"
        return self.root / study_uid / series_uid / name

    def prepare(self, source: Path) -> PreparedFile:
        """Bring ``source`` into ``.incoming``, hash it and make it durable.

        The source is renamed when it lies on the spool's file system (the receiver
        streams into ``.incoming``), otherwise copied while hashing.
        """
        target = self.incoming / f"{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        size = 0
        same_fs = os.stat(source).st_dev == os.stat(self.incoming).st_dev
        try:
            if same_fs:
                os.replace(source, target)
                with target.open("rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                    os.fsync(fh.fileno())
            else:
                with source.open("rb") as src, target.open("wb") as dst:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        dst.write(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
        except OSError as exc:
            target.unlink(missing_ok=True)
            raise SpoolError(f"cannot write to the spool: {exc}") from exc
        return PreparedFile(target, size, digest.hexdigest())

    def commit(
        self, prepared: PreparedFile, study_uid: str, series_uid: str, sop_uid: str, version: int
    ) -> Path:
        """Move a prepared file to its final name, durably; return that path."""
        final = self.path_for(study_uid, series_uid, sop_uid, version)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(prepared.path, final)
            _fsync_dir(final.parent)
            _fsync_dir(final.parent.parent)
        except OSError as exc:
            raise SpoolError(f"cannot move the instance into the spool: {exc}") from exc
        return final

    @staticmethod
    def discard(prepared: PreparedFile) -> None:
        """Delete a prepared file that will not be kept (duplicate or refused)."""
        prepared.path.unlink(missing_ok=True)
