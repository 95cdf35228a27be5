"""The local outbox: one folder per study with everything produced for it.

The store of results beside the spool of inputs: the report writer is its one writer,
the dispatcher and the web pages read it. Files are written atomically (temporary name,
``fsync``, rename), so a reader never sees a half-written result::

    <outbox>/<StudyInstanceUID>/<request folder>/result.json
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from ..errors import DispatchError
from ..spool import valid_uid

__all__ = ["Outbox", "atomic_write", "job_folder"]

_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
_NAME = re.compile(rf"(?:{_PART}/)?{_PART}")


def job_folder(job_key: str) -> str:
    """The outbox sub-folder of an analysis request (``<analysis>``, ``<analysis>-<block>``)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", job_key.replace(":", "-"))
    return name[:100] if name[:1].isalnum() else f"x{name}"[:100]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that the file is either old, new, or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DispatchError(f"cannot write {path}: {exc}") from exc


class Outbox:
    """The outbox folder.

    Parameters
    ----------
    root : Path
        Outbox folder (created if needed).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, study_uid: str) -> Path:
        """Return the study's folder.

        Raises
        ------
        DispatchError
            If ``study_uid`` is not a valid UID.
        """
        if not valid_uid(study_uid):
            raise DispatchError(f"invalid study UID {study_uid[:70]!r}")
        return self.root / study_uid

    def write_file(self, study_uid: str, name: str, data: bytes) -> Path:
        """Atomically write one file into the study's folder.

        ``name`` is ``<request folder>/<file name>`` (one folder per analysis request),
        or a file name.
        """
        if not _NAME.fullmatch(name):
            raise DispatchError(f"invalid outbox file name {name!r}")
        path = self.folder(study_uid) / name
        atomic_write(path, data)
        return path
