"""Where a C-STORE data set streams while it arrives, and what happens when the disk fills.

pynetdicom's chunked receive (``STORE_RECV_CHUNKED_DATASET``) writes each incoming data
set into a file it opens with :func:`tempfile.NamedTemporaryFile`. Left alone, that
file lies wherever :mod:`tempfile` points, a full disk raises inside pynetdicom's reader
(the sender sees an abort, never a status) and the partial file stays behind.

:func:`install` replaces that one factory (``pynetdicom.dimse_messages
.NamedTemporaryFile``, the seam pynetdicom 3 has for it) by :func:`open_receive_file`.
For associations that a :class:`ReceiveFiles` registry was attached to (the listener's,
the C-GET retrieves'), the data set goes into the spool's ``.incoming`` folder through a
:class:`ReceiveFile`, which

* checks the spool's free-space floor when the data set starts and every
  :data:`CHECK_EVERY` bytes, and treats crossing it like ``ENOSPC``;
* on ``ENOSPC`` (or any write error) deletes the partial file at once, discards the rest
  of the data set as it arrives, and remembers why, so the C-STORE handler answers
  0xA700 when the transfer ends and the next instance finds the space free again;
* is owned by the association's reader thread, so whatever an aborted association leaves
  half-written is deleted when the association ends (:meth:`ReceiveFiles.discard_owned`).

Any other association (none attached) gets pynetdicom's usual temporary file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import DiskFullError, SpoolError

__all__ = ["CHECK_EVERY", "ReceiveFile", "ReceiveFiles", "install", "open_receive_file"]

logger = logging.getLogger(__name__)

#: Free space is re-checked after this many bytes of one data set.
CHECK_EVERY = 64 * 2**20

# Association (acceptor or requestor) -> its registry. Weak: an ended association
# does not keep its registry alive.
_attached: weakref.WeakKeyDictionary[Any, ReceiveFiles] = weakref.WeakKeyDictionary()
_attached_lock = threading.Lock()
_install_lock = threading.Lock()


@dataclass(frozen=True)
class ReceiveOutcome:
    """What happened to one streamed data set."""

    path: Path
    error: SpoolError | None


class ReceiveFile:
    """A data set being written into ``.incoming`` (duck-types a NamedTemporaryFile).

    Parameters
    ----------
    registry : ReceiveFiles
        The registry that owns the file.
    path : Path
        Where the data set goes.
    """

    def __init__(self, registry: ReceiveFiles, path: Path) -> None:
        self._registry = registry
        self.name = str(path)
        self.path = path
        self.owner = threading.current_thread()
        self.error: SpoolError | None = None
        self.written = 0
        self._since_check = 0
        self._fh: IO[bytes] | None = None
        try:
            registry.check_space()
            self._fh = path.open("xb")
        except SpoolError as exc:
            self._fail(exc)
        except OSError as exc:
            self._fail(_spool_error(exc))

    # pynetdicom calls ``write``, ``file.flush`` and ``close``; ``file`` is ourselves.
    @property
    def file(self) -> ReceiveFile:
        """Return this object (pynetdicom flushes through ``.file``)."""
        return self

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Write ``data``; after a failure, count and discard it."""
        size = len(data)
        self.written += size
        if self._fh is None:
            return size
        try:
            self._fh.write(data)
            self._since_check += size
            if self._since_check >= CHECK_EVERY:
                self._since_check = 0
                self._fh.flush()
                self._registry.check_space()
        except SpoolError as exc:
            self._fail(exc)
        except OSError as exc:
            self._fail(_spool_error(exc))
        return size

    def flush(self) -> None:
        """Flush to the operating system (a full disk may show here first)."""
        if self._fh is None:
            return
        try:
            self._fh.flush()
        except OSError as exc:
            self._fail(_spool_error(exc))

    def close(self) -> None:
        """Close the file (kept on disk for the C-STORE handler unless it failed)."""
        if self._fh is None:
            return
        try:
            self._fh.close()
        except OSError as exc:
            self._fh = None
            self._fail(_spool_error(exc))
        self._fh = None

    def _fail(self, error: SpoolError) -> None:
        """Give up on this data set: free its space now and remember why."""
        if self.error is None:
            self.error = error
            logger.warning(
                "C-STORE data set dropped while receiving",
                extra={"reason": str(error), "bytes": self.written},
            )
        if self._fh is not None:
            with contextlib.suppress(OSError):  # the file goes anyway
                self._fh.close()
            self._fh = None
        self.path.unlink(missing_ok=True)


def _spool_error(exc: OSError) -> SpoolError:
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"spool disk full while receiving ({os.strerror(exc.errno)})")
    return SpoolError(f"cannot write the received data set to the spool: {exc.strerror}")


class ReceiveFiles:
    """The data sets streaming into one spool's ``.incoming`` folder.

    Parameters
    ----------
    incoming : Path
        The spool's ``.incoming`` folder.
    check_space : callable
        Raises :class:`~gateway.errors.DiskFullError` when free space is below the floor.
    """

    def __init__(self, incoming: Path, check_space: Any) -> None:
        self.incoming = Path(incoming)
        self.check_space = check_space
        self._open: dict[str, ReceiveFile] = {}
        self._lock = threading.Lock()

    def attach(self, assoc: Any) -> None:
        """Route the data sets ``assoc`` receives into this registry."""
        with _attached_lock:
            _attached[assoc] = self

    def create(self) -> ReceiveFile:
        """Open a new receive file (called from the association's reader thread)."""
        file = ReceiveFile(self, self.incoming / f"{uuid.uuid4().hex}.recv")
        with self._lock:
            self._open[file.name] = file
        return file

    def claim(self, path: str | os.PathLike[str]) -> ReceiveOutcome:
        """Take over a complete data set for the C-STORE handler.

        Returns
        -------
        ReceiveOutcome
            The path, and the error that made the data set incomplete, if any.
        """
        with self._lock:
            file = self._open.pop(str(path), None)
        if file is None:  # not one of ours (pynetdicom's own temporary file)
            return ReceiveOutcome(Path(path), None)
        file.close()
        return ReceiveOutcome(file.path, file.error)

    def discard_owned(self, *owners: Any) -> int:
        """Delete the unfinished data sets written by ``owners`` (threads); return how many."""
        with self._lock:
            mine = [f for f in self._open.values() if f.owner in owners]
            for file in mine:
                del self._open[file.name]
        for file in mine:
            file.close()
            file.path.unlink(missing_ok=True)
        if mine:
            logger.info(
                "partial data sets of an ended association removed", extra={"count": len(mine)}
            )
        return len(mine)


def _registry_for_current_thread() -> ReceiveFiles | None:
    """The registry of the association whose reader thread is running now."""
    thread: Any = threading.current_thread()
    for candidate in (getattr(thread, "assoc", None), thread):
        if candidate is None:
            continue
        with _attached_lock:
            registry = _attached.get(candidate)
        if registry is not None:
            return registry
    return None


def open_receive_file(*args: Any, **kwargs: Any) -> Any:
    """Stand-in for ``NamedTemporaryFile`` inside pynetdicom's C-STORE receive."""
    registry = _registry_for_current_thread()
    if registry is None:
        return tempfile.NamedTemporaryFile(*args, **kwargs)  # noqa: SIM115 - pynetdicom closes it
    return registry.create()


def install() -> None:
    """Route pynetdicom's chunked C-STORE receive through :func:`open_receive_file`.

    Raises
    ------
    RuntimeError
        If the installed pynetdicom no longer has the seam (an upgrade changed it); the
        gateway must not run with data sets going where it cannot see them.
    """
    from pynetdicom import dimse_messages

    with _install_lock:
        current = getattr(dimse_messages, "NamedTemporaryFile", None)
        if current is open_receive_file:
            return
        if current is not tempfile.NamedTemporaryFile:
            raise RuntimeError(
                "pynetdicom.dimse_messages.NamedTemporaryFile is not the stdlib factory; "
                "this pynetdicom version is not supported (see constraints.txt)"
            )
        dimse_messages.NamedTemporaryFile = open_receive_file  # type: ignore[attr-defined]
