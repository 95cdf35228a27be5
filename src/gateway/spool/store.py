r"""The spool: received instances as durable files, one unique file per accepted transfer.

Layout::

    <spool>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.<token>.dcm
    <spool>/.incoming/<node>/ data sets arriving, and placements not yet recorded (each
                              node of a cluster has its own: a restarting node cleans up
                              only what it left)
    <spool>/.quarantine/      files found at start-up that could not be recorded

``<token>`` is unique to the transfer, so two transfers never share a file name: a
concurrent re-send of the same SOP Instance UID cannot overwrite a file that was
acknowledged, and a refused transfer only ever deletes its own file. (Catalogs from
earlier releases name ``<SOPInstanceUID>.dcm`` / ``.vN.dcm``; those paths stay valid.)

A file enters the spool in steps, each durable before the next:

1. :meth:`Spool.prepare`: the received data goes to ``.incoming/<token>.part`` (a rename
   when it lies on the same file system, else a copy), is hashed and ``fsync``\ ed.
2. :meth:`Spool.place`: renamed to ``.incoming/<token>_<study>_<series>_<sop>.placing``
   (the name says where it goes), then hard-linked to its final name (a link never
   replaces an existing file) and the folders ``fsync``\ ed.
3. The caller records the instance in the catalog, then :meth:`Spool.settle` removes the
   ``.placing`` name (or :meth:`Spool.discard` removes both names when the catalog
   refused it or it was a duplicate).

After a crash, :meth:`Spool.placements` lists what step 2 left behind, so the caller can
record complete, valid files and :meth:`Spool.quarantine` the rest; everything else in
``.incoming`` belonged to a transfer that was never acknowledged and is deleted by
:meth:`Spool.clean_incoming`.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..errors import DiskFullError, SpoolError

__all__ = ["Placement", "PreparedFile", "Spool", "valid_uid"]

logger = logging.getLogger(__name__)

_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_PLACING_RE = re.compile(r"^([0-9a-f]{32})_([0-9.]+)_([0-9.]+)_([0-9.]+)\.placing$")
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

    @property
    def token(self) -> str:
        """The transfer's unique token (also part of its final name)."""
        return self.path.name.split(".", 1)[0].split("_", 1)[0]


@dataclass(frozen=True)
class Placement:
    """A file linked to its final name whose catalog record may be missing."""

    placing: Path
    final: Path
    study_uid: str
    series_uid: str
    sop_instance_uid: str


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _spool_error(action: str, exc: OSError) -> SpoolError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"spool disk full: {action}")
    return SpoolError(f"{action}: {exc.strerror or exc}")


class Spool:
    """Durable storage of received instances.

    Parameters
    ----------
    root : Path
        Spool folder (created if needed).
    min_free_bytes : int
        Refuse new data when free space on the spool's file system is below this.
    node : str, optional
        This node's name: its data in transit goes to ``.incoming/<node>``.
    """

    def __init__(self, root: Path, min_free_bytes: int = 0, node: str | None = None) -> None:
        self.root = Path(root)
        self.incoming = self.root / ".incoming" / node if node else self.root / ".incoming"
        self.quarantine_dir = self.root / ".quarantine"
        self.min_free_bytes = min_free_bytes
        try:
            self.incoming.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool at {self.root}: {exc}") from exc

    # -- space ------------------------------------------------------------------------

    def free_bytes(self) -> int:
        """Return the free space on the spool's file system."""
        return shutil.disk_usage(self.root).free

    def check_space(self, incoming_bytes: int = 0) -> None:
        """Raise :class:`DiskFullError` when free space would fall below the floor.

        Parameters
        ----------
        incoming_bytes : int
            Size of an instance about to be written, where it is known in advance.
        """
        free = self.free_bytes()
        if free - incoming_bytes < self.min_free_bytes:
            need = f" for {incoming_bytes // 2**20} MiB" if incoming_bytes else ""
            raise DiskFullError(
                f"spool free space {free // 2**20} MiB{need} is below the floor "
                f"{self.min_free_bytes // 2**20} MiB"
            )

    # -- names --------------------------------------------------------------------------

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str, token: str) -> Path:
        """Return the final path of one transfer of an instance.

        Raises
        ------
        SpoolError
            If a UID is not a valid UID (which would make an unsafe path).
        """
        for uid in (study_uid, series_uid, sop_uid):
            if not valid_uid(uid):
                raise SpoolError(f"invalid UID {uid[:70]!r}")
        if not re.fullmatch(r"[0-9a-f]{32}", token):
            raise SpoolError("invalid transfer token")
        return self.root / study_uid / series_uid / f"{sop_uid}.{token}.dcm"

    # -- the steps -------------------------------------------------------------------

    def prepare(self, source: Path) -> PreparedFile:
        """Bring ``source`` into ``.incoming``, hash it and make it durable.

        The source is renamed when it lies on the spool's file system (the receiver
        streams into ``.incoming``), otherwise copied while hashing.
        """
        target = self.incoming / f"{uuid.uuid4().hex}.part"
        digest = hashlib.sha256()
        size = 0
        try:
            same_fs = os.stat(source).st_dev == os.stat(self.incoming).st_dev
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
            raise _spool_error("cannot write to the spool", exc) from None
        return PreparedFile(target, size, digest.hexdigest())

    def place(
        self, prepared: PreparedFile, study_uid: str, series_uid: str, sop_uid: str
    ) -> tuple[PreparedFile, Path]:
        """Give a prepared file its final name (a new link, never a replacement).

        Returns
        -------
        tuple
            The prepared file under its ``.placing`` name, and the final path.
        """
        final = self.path_for(study_uid, series_uid, sop_uid, prepared.token)
        placing = self.incoming / f"{prepared.token}_{study_uid}_{series_uid}_{sop_uid}.placing"
        try:
            os.replace(prepared.path, placing)
            _fsync_dir(self.incoming)
            created = not final.parent.exists()
            final.parent.mkdir(parents=True, exist_ok=True)
            os.link(placing, final)  # FileExistsError rather than replacing
            _fsync_dir(final.parent)
            if created:
                _fsync_dir(final.parent.parent)
                _fsync_dir(self.root)
        except OSError as exc:
            placing.unlink(missing_ok=True)
            prepared.path.unlink(missing_ok=True)
            raise _spool_error("cannot move the instance into the spool", exc) from None
        return PreparedFile(placing, prepared.size, prepared.sha256), final

    def settle(self, placed: PreparedFile) -> None:
        """Drop the ``.placing`` name once the catalog holds the instance."""
        placed.path.unlink(missing_ok=True)

    @staticmethod
    def discard(prepared: PreparedFile, final: Path | None = None) -> None:
        """Delete a transfer's own files (duplicate or refused; never acknowledged)."""
        if final is not None:
            final.unlink(missing_ok=True)
        prepared.path.unlink(missing_ok=True)

    # -- start-up ------------------------------------------------------------------------

    def placements(self) -> list[Placement]:
        """Placements left by a crash between linking and recording (step 2 of 3)."""
        found = []
        for path in sorted(self.incoming.glob("*.placing")):
            match = _PLACING_RE.match(path.name)
            if match is None:
                continue
            token, study, series, sop = match.groups()
            try:
                final = self.path_for(study, series, sop, token)
            except SpoolError:
                continue
            found.append(Placement(path, final, study, series, sop))
        return found

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move a file that cannot be recorded out of the way, for an operator."""
        self.quarantine_dir.mkdir(exist_ok=True)
        target = self.quarantine_dir / path.name
        os.replace(path, target)
        logger.warning("spool file quarantined", extra={"file": target.name, "reason": reason})
        return target

    def clean_incoming(self) -> int:
        """Delete partial files left by interrupted transfers; return how many.

        Call after the placements were reconciled: whatever is still in ``.incoming``
        was never acknowledged.
        """
        removed = 0
        folders = {self.incoming, self.root / ".incoming"}  # and the pre-cluster layout's
        for folder in folders:
            for path in folder.iterdir():
                if path.is_file():
                    path.unlink(missing_ok=True)
                    removed += 1
        if removed:
            logger.warning(
                "removed partial files of unacknowledged transfers", extra={"count": removed}
            )
        return removed
