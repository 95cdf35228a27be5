"""Shared pieces of the settings models: the frozen base model, AE titles, UIDs."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from ihgamp_core.analysis.contract import SOP_CLASSES

ENV_PREFIX = "IHGAMP__"
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash, 1..16
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")

#: SOP classes accepted by default: VL Whole Slide Microscopy Image, Comprehensive 3D SR.
DEFAULT_SOP_CLASSES = (
    SOP_CLASSES["VLWholeSlideMicroscopyImageStorage"],
    SOP_CLASSES["Comprehensive3DSRStorage"],
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _ae_title(value: str) -> str:
    value = value.strip()
    if not _AE_RE.match(value):
        raise ValueError("an AE title is 1-16 printable characters without backslash")
    return value


AETitle = Annotated[str, Field(description="DICOM AE title")]


def redact_url(url: str) -> str:
    """Hide a password in a URL (``scheme://user:***@host``)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
