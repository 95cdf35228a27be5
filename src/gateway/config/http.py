"""``[http]``: the HTTP service and its named API tokens."""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from ..errors import ConfigError
from .base import _Model


class TokenAccess(StrEnum):
    """What an API token may do."""

    READ = "read"
    """Read results: ``/api/studies``, ``/fhir``, heatmap PNGs, the OpenAPI description."""
    OPERATE = "operate"
    """Everything ``read`` may, plus the status page (login), requeue, redispatch, audit."""


def _expiry(value: dt.datetime | dt.date | None) -> dt.datetime | dt.date | None:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        raise ValueError("give a UTC offset, e.g. 2027-01-31T00:00:00Z, or a date")
    return value


class ApiToken(_Model):
    """A named bearer token (one consumer may hold several, for rotation)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    token: SecretStr | None = Field(default=None, min_length=16)
    token_file: Path | None = None
    expires: dt.datetime | dt.date | None = None
    access: TokenAccess = TokenAccess.READ

    _v_expires = field_validator("expires")(_expiry)

    @field_validator("expires", mode="before")
    @classmethod
    def _date_text(cls, value: Any) -> Any:
        # "2027-01-01" is a date (an environment override arrives as text), not a naive time.
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            return dt.date.fromisoformat(value.strip())
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> ApiToken:
        if (self.token is None) == (self.token_file is None):
            raise ValueError(f"token {self.name!r}: give exactly one of token and token_file")
        return self

    def expires_at(self) -> dt.datetime | None:
        """When the token stops working (a date means 00:00 UTC of that day)."""
        if isinstance(self.expires, dt.datetime) or self.expires is None:
            return self.expires
        return dt.datetime(self.expires.year, self.expires.month, self.expires.day, tzinfo=dt.UTC)

    def secret(self) -> str:
        """The token's value (read from ``token_file`` when that is given).

        Raises
        ------
        ConfigError
            If the file cannot be read or holds fewer than 16 characters.
        """
        if self.token is not None:
            return self.token.get_secret_value()
        assert self.token_file is not None  # noqa: S101 - checked by _one_secret
        try:
            value = Path(self.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"token {self.name!r}: cannot read {self.token_file}: {exc}"
            ) from None
        if len(value) < 16:
            raise ConfigError(f"token {self.name!r}: {self.token_file} holds < 16 characters")
        return value


class HttpSettings(_Model):
    """The HTTP service: health, metrics, status page, API, FHIR endpoint."""

    enabled: bool = True
    bind_host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token: SecretStr | None = Field(default=None, min_length=16)
    token_file: Path | None = None
    tokens: tuple[ApiToken, ...] = ()
    session_max_age_s: float = Field(default=8 * 3600.0, ge=60, le=7 * 86400)
    cookie_secure: bool = False
    metrics_auth: bool = False
    max_connections: int = Field(default=256, ge=4, le=65536)
    max_connections_per_client: int = Field(default=32, ge=1, le=65536)
    login_failures_before_backoff: int = Field(default=5, ge=1, le=1000)
    header_timeout_s: float = Field(default=10.0, gt=0, le=600)
    keep_alive_s: int = Field(default=5, ge=1, le=600)
    max_header_bytes: int = Field(default=16384, ge=1024, le=1048576)
    access_log: bool = True

    @model_validator(mode="after")
    def _token(self) -> HttpSettings:
        if self.token_file is not None and not Path(self.token_file).is_file():
            raise ValueError(f"token_file {self.token_file} does not exist")
        for entry in self.tokens:
            if entry.token_file is not None and not Path(entry.token_file).is_file():
                raise ValueError(f"token {entry.name!r}: {entry.token_file} does not exist")
        names = [t.name for t in self.api_tokens()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"token names must be unique: {duplicates} (http.token is 'default')")
        return self

    def api_tokens(self) -> tuple[ApiToken, ...]:
        """Every configured token; ``http.token`` / ``token_file`` is the one named ``default``.

        The single token predates named tokens and keeps its meaning: no expiry, and
        ``operate`` access.
        """
        legacy: tuple[ApiToken, ...] = ()
        if self.token is not None or self.token_file is not None:
            legacy = (
                ApiToken(
                    name="default",
                    token=self.token,
                    token_file=None if self.token is not None else self.token_file,
                    access=TokenAccess.OPERATE,
                ),
            )
        return legacy + self.tokens
