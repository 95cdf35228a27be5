"""``[analyses]`` (enabled analyses, their tables, routing rules), ``[triage]``, ``[fhir]``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from ihgamp_core.analysis.contract import Stain
from ihgamp_core.analysis.metadata import MetadataRules, StainRule
from ihgamp_core.analysis.routing import RoutingLimits
from ihgamp_core.errors import ParameterError

from ..analyses.registry import LEGACY_ANALYSIS, AnalysisSettings
from .base import _Model


class StainRuleSettings(_Model):
    """A site stain rule: ``pattern`` found in ``fields`` means ``stain``."""

    pattern: str = Field(min_length=1, max_length=200)
    stain: Literal["he", "ihc-her2", "ihc-other"]
    fields: tuple[
        Literal[
            "series_description", "study_description", "container_identifier", "source", "stain"
        ],
        ...,
    ] = ("series_description", "container_identifier")
    overrides: bool = False


class AnalysesSettings(_Model):
    """Which analyses run, their settings, and how slide metadata is read for routing.

    The default (``enabled = ["hrd"]``, ``default_stain = "he"``) is the gateway before
    analyses existed: every slide without stain information is an H&E slide for HRD.
    Each registered analysis has a table ``[analyses.<name>]`` (its entry's settings,
    :mod:`gateway.analyses`); ``plugins`` names modules that register a site's own.
    """

    enabled: tuple[str, ...] = Field(default=(LEGACY_ANALYSIS,), min_length=1)
    plugins: tuple[str, ...] = ()
    options: dict[str, AnalysisSettings] = Field(default_factory=dict, exclude=True)
    default_stain: Literal["he", "ihc-her2", "ihc-other", "none"] = "he"
    default_body_part: str | None = Field(default=None, pattern=r"^[A-Z_ ]{1,16}$")
    block_pattern: str | None = None
    stain_rules: tuple[StainRuleSettings, ...] = ()
    max_slides_per_study: int = Field(default=20, ge=1, le=10_000)
    max_blocks_per_study: int = Field(default=10, ge=1, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _analysis_tables(cls, data: Any) -> Any:
        """Move each analysis' ``[analyses.<name>]`` table (and old flat keys) into ``options``."""
        if not isinstance(data, Mapping):
            return data
        from ..analyses import PluginError, entries, load_plugins

        data = dict(data)
        plugins = data.get("plugins") or ()
        if isinstance(plugins, str):
            plugins = (plugins,)
        if not isinstance(plugins, list | tuple) or not all(isinstance(p, str) for p in plugins):
            raise ValueError("plugins: a list of importable module names")
        try:
            load_plugins(tuple(plugins))
        except PluginError as exc:
            raise ValueError(str(exc)) from None
        options: dict[str, AnalysisSettings] = {}
        for item in entries():
            if item.name in cls.model_fields:
                raise ValueError(f"an analysis cannot be named {item.name!r} (an [analyses] key)")
            table = data.pop(item.name, None)
            moved = {new: data.pop(old) for old, new in item.legacy_keys.items() if old in data}
            both = sorted(
                f"{old} and [analyses.{item.name}] {new}"
                for old, new in item.legacy_keys.items()
                if new in moved and isinstance(table, Mapping) and new in table
            )
            if both:
                raise ValueError(f"give one of {'; '.join(both)}, not both")
            if isinstance(table, item.settings):
                options[item.name] = table
                continue
            if table is not None and not isinstance(table, Mapping):
                raise ValueError(f"{item.name}: a table of that analysis' settings")
            try:
                options[item.name] = item.settings.model_validate({**moved, **(table or {})})
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in (item.name, *first["loc"]))
                raise ValueError(f"{where}: {first['msg']}") from None
        data["options"] = options
        return data

    @model_validator(mode="after")
    def _valid_rules(self) -> AnalysesSettings:
        from ..analyses import names

        known = names()
        for name in self.enabled:
            if name not in known:
                raise ValueError(
                    f"enabled: unknown analysis {name!r} (known: {', '.join(known)}; a site's "
                    "own analysis is added with analyses.plugins)"
                )
        if len(set(self.enabled)) != len(self.enabled):
            raise ValueError("each analysis is enabled once")
        try:  # the engine's own checks (regular expressions, the block group)
            self.metadata_rules()
        except ParameterError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_serializer(mode="wrap")
    def _with_tables(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dump each analysis' table under its name (``[analyses.<name>]``), as read."""
        out: dict[str, Any] = handler(self)
        for name, table in self.options.items():
            out[name] = table.model_dump(mode="json")
        return out

    def settings_of(self, name: str) -> AnalysisSettings:
        """The ``[analyses.<name>]`` table of a registered analysis (its defaults if absent)."""
        from ..analyses import entry

        found = self.options.get(name)
        return found if found is not None else entry(name).settings()

    def metadata_rules(self) -> MetadataRules:
        """The engine's rules for reading stain, body part and block from slide headers."""
        return MetadataRules(
            stain_rules=tuple(
                StainRule(r.pattern, Stain(r.stain), r.fields, r.overrides)
                for r in self.stain_rules
            ),
            block_pattern=self.block_pattern,
            default_stain=None if self.default_stain == "none" else Stain(self.default_stain),
            default_body_part=self.default_body_part,
        )

    def routing_limits(self) -> RoutingLimits:
        """The engine's caps on the work one study may ask for."""
        return RoutingLimits(self.max_slides_per_study, self.max_blocks_per_study)


class TriageSettings(_Model):
    """Triage policy: histologies the model is not validated for, and histology sources."""

    not_validated_patterns: tuple[str, ...] = (r"squamous", r"\bSCC\b", r"keratini[sz]ing")
    histology_by_accession: dict[str, str] = Field(default_factory=dict)
    default_histology: str | None = None

    @field_validator("not_validated_patterns")
    @classmethod
    def _regexes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value


class FhirSettings(_Model):
    """How patients are identified in FHIR resources."""

    patient_id_systems: dict[str, str] = Field(default_factory=dict)
    default_patient_id_system: str = "urn:ihgamp:patient-id"
