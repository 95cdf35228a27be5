"""Catalog records for tests: one way to say "an instance of this study arrived"."""

from __future__ import annotations

from typing import Any

from gateway.catalog import InstanceRecord

WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def instance_record(
    study: str = "1.2.3",
    series: str = "1.2.3.4",
    sop: str = "1.2.3.4.5",
    sha: str | None = None,
    sop_class: str = WSI,
    spacing: float | None = 0.5,
    **fields: Any,
) -> InstanceRecord:
    """An :class:`InstanceRecord` as the receiver writes it (a slide level by default).

    ``sha`` defaults to one derived from ``sop`` (distinct instances, distinct content);
    ``fields`` set any other field (``accession_number``, ``source``, ``patient``...).
    """
    values: dict[str, Any] = {
        "study_uid": study,
        "series_uid": series,
        "sop_instance_uid": sop,
        "sop_class_uid": sop_class,
        "transfer_syntax_uid": "1.2.840.10008.1.2.4.50",
        "modality": "SM",
        "accession_number": None,
        "image_flavor": "VOLUME" if sop_class == WSI else None,
        "pixel_spacing_um": spacing,
        "path": f"/spool/{sop}.dcm",
        "size": 10,
        "sha256": sha if sha is not None else sop.ljust(64, "0")[:64],
    }
    values.update(fields)
    return InstanceRecord(**values)
