"""Device, Provenance and ImagingStudy resources kept for the read-only FHIR endpoint.

Observations have their own tables (:class:`~gateway.catalog.observations.ObservationStore`,
searched as FHIR defines); the resources they reference live here, each under the
one key it is searched by (see :class:`~gateway.catalog.schema.FhirResource`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import select

from ..errors import CatalogError
from .catalog import CatalogStore
from .observations import SearchPage, page_of
from .schema import FhirResource, Study

__all__ = ["FhirResourceStore", "ServedType"]


class ServedType(StrEnum):
    """Resource types kept in ``fhir_resources``."""

    DEVICE = "Device"
    PROVENANCE = "Provenance"
    IMAGING_STUDY = "ImagingStudy"


class FhirResourceStore(CatalogStore):
    """The ``fhir_resources`` table."""

    def put(
        self,
        resource: dict[str, Any],
        search_key: str,
        study_uid: str | None = None,
    ) -> None:
        """Store (or replace) one resource; its ``resourceType`` and ``id`` are its key.

        Raises
        ------
        CatalogError
            If the type is not kept here, the resource has no id, or the study is unknown.
        """
        try:
            kind = ServedType(str(resource.get("resourceType")))
        except ValueError:
            raise CatalogError(f"{resource.get('resourceType')} is not kept here") from None
        resource_id = resource.get("id")
        if not isinstance(resource_id, str) or not resource_id:
            raise CatalogError(f"a stored {kind} needs an id")
        with self.catalog.session() as s:
            study_id = None
            if study_uid is not None:
                study = s.scalars(select(Study).where(Study.study_uid == study_uid)).first()
                if study is None:
                    raise CatalogError(f"no study {study_uid} in the catalog")
                study_id = study.id
            row = s.get(FhirResource, (str(kind), resource_id))
            if row is None:
                row = FhirResource(resource_type=str(kind), id=resource_id)
                s.add(row)
            if study_id is not None:
                row.study_id = study_id
            row.search_key = search_key
            row.resource = json.dumps(resource)

    def get(self, kind: ServedType, resource_id: str) -> dict[str, Any] | None:
        """One resource by type and id."""
        with self.catalog.session() as s:
            row = s.get(FhirResource, (str(kind), resource_id))
            return None if row is None else _resource(row)

    def get_many(self, kind: ServedType, resource_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The resources of one type and the given ids that exist (any order)."""
        if not resource_ids:
            return []
        with self.catalog.session() as s:
            rows = s.scalars(
                select(FhirResource).where(
                    FhirResource.resource_type == str(kind), FhirResource.id.in_(resource_ids)
                )
            )
            return [_resource(r) for r in rows]

    def search(
        self, kind: ServedType, search_keys: Sequence[str], offset: int = 0, limit: int = 100
    ) -> SearchPage:
        """Resources of one type stored under any of ``search_keys``, newest first.

        Returns their total and ``limit`` of them after ``offset`` (``limit`` 0: the
        total only).
        """
        statement = select(FhirResource).where(
            FhirResource.resource_type == str(kind), FhirResource.search_key.in_(search_keys)
        )
        order = (FhirResource.updated_at.desc(), FhirResource.id.asc())
        with self.catalog.session() as s:
            return page_of(s, statement, order, offset, limit, _resource)


def _resource(row: FhirResource) -> dict[str, Any]:
    """The stored resource."""
    return cast(dict[str, Any], json.loads(row.resource))
