"""The process's file-descriptor budget: the DICOM listener first, HTTP with what is left.

Every DICOM association holds a socket and, while it receives, a spool file; the
catalog, the workers (slide files) and the libraries hold more. ``ihgamp serve`` raises
the soft ``RLIMIT_NOFILE`` to the hard limit at start-up, and the HTTP service may keep
open only the connections that remain after a reserve for everything else, so that a
flood of idle HTTP connections can never make a C-STORE fail with "Too many open
files".
"""

from __future__ import annotations

import logging
import os
import resource

from .config import Settings

__all__ = ["descriptor_reserve", "http_connection_budget", "open_descriptors", "raise_nofile"]

logger = logging.getLogger(__name__)

#: Descriptors kept for the process itself (libraries, catalog, logs, spool folders).
BASE_RESERVE = 128
#: Per DICOM association: its socket, the file it streams into, headroom for the SCP.
PER_ASSOCIATION = 4
#: Per scoring worker: the slide files of one case and the thumbnail reads.
PER_WORKER = 32
#: Per dispatch destination: one outgoing connection and the files it sends.
PER_DESTINATION = 4
#: The HTTP service keeps at least this many connections, however low the limit.
MIN_HTTP_CONNECTIONS = 4


def raise_nofile() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.warning("cannot raise the open-files limit", extra={"error": str(exc)})
    return int(soft)


def open_descriptors() -> int:
    """Descriptors the process has open now (0 where the platform cannot tell)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def descriptor_reserve(settings: Settings) -> int:
    """Descriptors kept for everything but HTTP connections."""
    d = settings.dispatch
    destinations = len(d.dicom) + len(d.dicomweb) + len(d.fhir)
    return (
        BASE_RESERVE
        + PER_ASSOCIATION * settings.dicom.max_associations
        + PER_WORKER * settings.worker.count
        + PER_DESTINATION * destinations
    )


def http_connection_budget(settings: Settings, soft_limit: int, in_use: int) -> int:
    """How many HTTP connections the process can afford.

    Parameters
    ----------
    settings : Settings
        ``http.max_connections`` and what the reserve is made of.
    soft_limit : int
        The process's soft ``RLIMIT_NOFILE``.
    in_use : int
        Descriptors open before the services start.

    Returns
    -------
    int
        ``http.max_connections``, lowered (with a warning) to half of what the limit
        leaves after the reserve (a burst of connections briefly holds up to as many
        again, accepted and about to be closed), but never below a handful.
    """
    wanted = settings.http.max_connections
    available = (soft_limit - in_use - descriptor_reserve(settings)) // 2
    budget = max(MIN_HTTP_CONNECTIONS, min(wanted, available))
    if budget < wanted:
        logger.warning(
            "http.max_connections lowered to fit the open-files limit (ulimit -n)",
            extra={
                "configured": wanted,
                "used": budget,
                "nofile": soft_limit,
                "reserve": descriptor_reserve(settings),
            },
        )
    return budget
