"""The output manifest of an analysis result: what was issued, kept with its catalog row.

Everything that later readers need from a result without opening its files: the result
key (an equal key is the same result), where its files are, the UIDs of its SR and map
objects, its Observation identifiers (its own, and the first of its chain that the EHR
holds), the triage text and notes people read. The predecessor of a new result, the web
pages and the API read it from ``analysis_results.outputs``; ``result.json`` stays in the
outbox as an export for people.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["ResultManifest"]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class ResultManifest:
    """What one analysis result issued.

    Parameters
    ----------
    key : str
        The result key (from the model, its parameters and the input instances).
    folder : str
        Its folder in the study's outbox folder (:func:`~gateway.outbox.job_folder`).
    files : tuple of str
        The files written there (``result.json`` aside).
    sr_series_uid, sr_sop_uid : str
        The SR's Series and SOP Instance UIDs.
    observation_identifier : str
        This result's own Observation identifier.
    chain_identifier : str
        The identifier the EHR's Observation has: the first result's of the request (a
        result that supersedes another amends that Observation in place).
    created : str
        When the analysis produced it (ISO 8601).
    slides : int
        How many series it read.
    triage_category, triage_text, triage_statement : str or None
        The triage outcome and its statement of use, for people.
    notes : tuple of str
        Why an output is missing or what to know.
    qc_flags : tuple of str
        The analysis' quality-control flags.
    """

    key: str
    folder: str
    files: tuple[str, ...]
    sr_series_uid: str
    sr_sop_uid: str
    observation_identifier: str
    chain_identifier: str
    created: str = "earlier"
    slides: int = 0
    triage_category: str | None = None
    triage_text: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    triage_statement: str | None = None
    qc_flags: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ResultManifest:
        """The manifest of a ``result.json`` document as the report writer completes it.

        Raises
        ------
        KeyError, TypeError, ValueError
            If the document lacks the output identifiers.
        """
        outputs = document["outputs"]
        triage = document.get("triage") or {}
        own = str(outputs["observation_identifier"])
        return cls(
            key=str(outputs["key"]),
            folder=str(outputs.get("folder") or ""),
            files=tuple(str(f) for f in outputs.get("files") or ()),
            sr_series_uid=str(outputs["sr_series_instance_uid"]),
            sr_sop_uid=str(outputs["sr_sop_instance_uid"]),
            observation_identifier=own,
            chain_identifier=str(outputs.get("fhir_observation_identifier") or own),
            created=str(document.get("created") or "earlier"),
            slides=len(document.get("slides") or ()),
            triage_category=_text(triage.get("category")),
            triage_text=_text(triage.get("text")),
            notes=tuple(str(n) for n in document.get("notes") or ()),
            triage_statement=_text(triage.get("statement")),
            qc_flags=tuple(str(f) for f in document.get("qc_flags") or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the catalog column)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultManifest:
        """Read :meth:`to_dict`'s form back.

        Raises
        ------
        KeyError, TypeError
            If a required field is missing.
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["files"] = tuple(values.get("files") or ())
        values["notes"] = tuple(values.get("notes") or ())
        values["qc_flags"] = tuple(values.get("qc_flags") or ())
        return cls(**values)
