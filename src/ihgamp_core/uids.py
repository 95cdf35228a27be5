"""Deterministic DICOM UIDs.

``derived_uid(*parts)`` is ``2.25.`` followed by the integer form of a name-based UUID
(version 5) of the parts: the same parts give the same UID on every run and machine,
different parts give different UIDs (PS3.5 Annex B.2). pydicom's ``generate_uid`` ignores
its entropy sources under the ``2.25.`` prefix, so it cannot be used for this.
"""

from __future__ import annotations

import uuid

__all__ = ["derived_uid"]

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:ihgamp:uid")


def derived_uid(*parts: str) -> str:
    """Return the UID derived from ``parts`` (at most 44 characters)."""
    return f"2.25.{uuid.uuid5(_NAMESPACE, chr(31).join(parts)).int}"
