"""How the parts run: storage, catalog, completion, workers, node, model, logging."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from .base import _Model, redact_url


class StorageSettings(_Model):
    """Where received instances and results are kept."""

    spool_dir: Path = Path("var/spool")
    outbox_dir: Path = Path("var/outbox")
    min_free_mb: int = Field(default=2048, ge=0)


class CatalogSettings(_Model):
    """The catalog database.

    ``password_file`` keeps the PostgreSQL password out of ``url`` (and out of
    ``ihgamp config check``): a compose or Kubernetes secret mounted as a file.
    """

    url: str = "sqlite:///var/catalog.db"
    password_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        return value

    @model_validator(mode="after")
    def _password_file(self) -> CatalogSettings:
        if self.password_file is None:
            return self
        if not self.url.startswith("postgresql"):
            raise ValueError("password_file applies to a postgresql:// url only")
        if not Path(self.password_file).is_file():
            raise ValueError(f"password_file {self.password_file} does not exist")
        return self

    def connect_url(self) -> str:
        """The URL to connect with: ``url`` plus the password from ``password_file``."""
        if self.password_file is None:
            return self.url
        from sqlalchemy.engine import make_url

        password = Path(self.password_file).read_text().strip()
        return make_url(self.url).set(password=password).render_as_string(hide_password=False)


class CompletionSettings(_Model):
    """When a study counts as completely received (timers persist across restarts)."""

    leader_lease_s: float = Field(default=15.0, gt=0)
    series_stable_s: float = Field(default=30.0, ge=0)
    study_stable_s: float = Field(default=60.0, ge=0)
    force_after_s: float = Field(default=3600.0, gt=0)
    expected_series: int = Field(default=0, ge=0)
    poll_interval_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> CompletionSettings:
        if self.force_after_s < self.study_stable_s:
            raise ValueError("force_after_s must be at least study_stable_s")
        return self


class QueueBackend(StrEnum):
    """How queued jobs reach workers."""

    INPROCESS = "inprocess"  # worker threads poll the catalog's job rows
    CELERY = "celery"  # a broker carries the job id to Celery workers


class WorkerSettings(_Model):
    """The job queue and scoring workers."""

    backend: QueueBackend = QueueBackend.INPROCESS
    count: int = Field(default=1, ge=0, le=64)
    lease_s: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff_s: float = Field(default=30.0, ge=0)
    backoff_max_s: float = Field(default=1800.0, ge=0)
    stop_timeout_s: float = Field(default=30.0, ge=0, le=3600)
    poll_interval_s: float = Field(default=1.0, gt=0)
    broker_url: str | None = None
    broker_password_file: Path | None = None
    queue_name: str = Field(default="ihgamp-score", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    republish_after_s: float = Field(default=600.0, gt=0)
    sweep_interval_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _broker(self) -> WorkerSettings:
        if self.backend == QueueBackend.CELERY:
            if not self.broker_url:
                raise ValueError(
                    "backend 'celery' needs broker_url (amqp://... for RabbitMQ, "
                    "redis://... for Redis; or IHGAMP__WORKER__BROKER_URL)"
                )
            if not self.broker_url.startswith(("amqp://", "amqps://", "redis://", "rediss://")):
                raise ValueError("broker_url must be amqp(s):// (RabbitMQ) or redis(s):// (Redis)")
        if self.broker_password_file is not None:
            if not self.broker_url:
                raise ValueError("broker_password_file needs broker_url")
            if not Path(self.broker_password_file).is_file():
                raise ValueError(f"broker_password_file {self.broker_password_file} does not exist")
        return self

    def broker_connect_url(self) -> str | None:
        """The URL to connect with: ``broker_url`` plus the password from its file.

        ``broker_password_file`` keeps the broker's password out of the configuration (a
        compose or Kubernetes secret mounted as a file), as ``catalog.password_file`` does.
        """
        if self.broker_url is None or self.broker_password_file is None:
            return self.broker_url
        from urllib.parse import quote, urlsplit, urlunsplit

        password = quote(Path(self.broker_password_file).read_text().strip(), safe="")
        parts = urlsplit(self.broker_url)
        user = quote(parts.username or "", safe="")
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))

    def broker_redacted(self) -> str | None:
        """The broker URL without its password (for logs and ``config check``)."""
        if self.broker_url is None:
            return None
        return redact_url(self.broker_url)


class NodeSettings(_Model):
    """One node of a cluster (one process of ``ihgamp serve``)."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"


class ModelSettings(_Model):
    """Model files and scoring options."""

    head: Path | None = None
    backbone_checkpoint: Path | None = None
    device: str = "auto"
    max_tiles: int | None = Field(default=None, ge=1)
    min_tiles: int = Field(default=16, ge=1)
    batch_size: int = Field(default=0, ge=0, le=4096)
    readers: int = Field(default=2, ge=1, le=64)
    pipeline: Literal["fast", "reference"] = "fast"
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"

    @field_validator("head", "backbone_checkpoint")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).exists():
            raise ValueError(f"{value} does not exist")
        return value

    @model_validator(mode="after")
    def _int8_on_cpu(self) -> ModelSettings:
        if self.precision == "int8" and self.device.startswith("cuda"):
            raise ValueError("precision int8 runs on the CPU only; use fp16 with a GPU device")
        return self


class LoggingSettings(_Model):
    """Log output of the service."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"
