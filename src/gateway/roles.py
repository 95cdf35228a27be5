"""What each role of ``ihgamp serve`` runs, and what it needs from the rest of a cluster.

======================  ===============================================================
role                    runs
======================  ===============================================================
``all`` (default)       everything below in one process (the embedded default)
``receiver``            DICOM listener (C-ECHO, C-STORE), query/retrieve and auto-pull,
                        completion and the queue sweeper (one leader at a time)
``worker``              scoring (GPU nodes): the queue's consumer, reports to the outbox
``dispatcher``          delivery of results to the PACS, DICOMweb and FHIR destinations
``api``                 the HTTP service: health, metrics, status page, API, FHIR
======================  ===============================================================

Any number of each role may run on any number of machines against one catalog
(PostgreSQL), one broker (with ``worker.backend = "celery"``) and one shared spool and
outbox (a POSIX file system: NFS, CephFS, EFS). :func:`problems` says which
combinations cannot work, before anything starts.
"""

from __future__ import annotations

from enum import StrEnum

from .config import QueueBackend, Settings

__all__ = ["Role", "needs", "problems"]


class Role(StrEnum):
    """A part of the gateway that ``ihgamp serve --role`` runs."""

    ALL = "all"
    RECEIVER = "receiver"
    WORKER = "worker"
    DISPATCHER = "dispatcher"
    API = "api"


def needs(role: Role, settings: Settings) -> list[str]:
    """The services and shared paths ``role`` uses (for ``ihgamp config check``)."""
    out = [f"catalog database ({'PostgreSQL' if _postgres(settings) else 'SQLite'})"]
    celery = settings.worker.backend == QueueBackend.CELERY
    if role in (Role.ALL, Role.RECEIVER):
        out += [
            f"DICOM port {settings.dicom.port} reachable by scanners and PACS",
            f"spool {settings.storage.spool_dir} (shared, read-write)",
        ]
    if role in (Role.ALL, Role.WORKER):
        out += [
            f"spool {settings.storage.spool_dir} (read)",
            f"outbox {settings.storage.outbox_dir} (shared, read-write)",
            "model files (model.head, model.backbone_checkpoint) or the DEMO model",
        ]
    if role in (Role.ALL, Role.DISPATCHER):
        out += [f"outbox {settings.storage.outbox_dir} (read)", "result destinations"]
    if role in (Role.ALL, Role.API):
        out += [
            f"HTTP port {settings.http.port}",
            f"outbox {settings.storage.outbox_dir} (read)",
        ]
    if celery and role in (Role.ALL, Role.RECEIVER, Role.WORKER, Role.API):
        out.append(f"broker {settings.worker.broker_redacted()}")
    return out


def problems(role: Role, settings: Settings) -> list[str]:
    """Why ``role`` cannot run with ``settings`` (empty: it can)."""
    out = []
    if role != Role.ALL:
        if not _postgres(settings):
            out.append(
                f"role {role} shares the catalog with other nodes: use PostgreSQL "
                "(catalog.url = postgresql+psycopg://...), not SQLite"
            )
        for name, path in (
            ("storage.spool_dir", settings.storage.spool_dir),
            ("storage.outbox_dir", settings.storage.outbox_dir),
        ):
            if not path.is_absolute():
                out.append(f"{name} must be an absolute path on the shared file system")
    if role == Role.WORKER and settings.worker.count < 1:
        out.append("role worker needs worker.count >= 1")
    if role == Role.API and not settings.http.enabled:
        out.append("role api needs http.enabled = true")
    if settings.worker.backend == QueueBackend.CELERY:
        visibility = settings.worker.republish_after_s
        if visibility < settings.worker.lease_s:
            out.append(
                "worker.republish_after_s must be at least worker.lease_s: a job would be "
                "published again while its worker still holds it"
            )
    return out


def _postgres(settings: Settings) -> bool:
    return settings.catalog.url.startswith("postgresql")
