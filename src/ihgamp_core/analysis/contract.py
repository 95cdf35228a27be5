"""The analysis contract: what an analysis applies to, what it needs, what it returns.

An *analysis* is one model behind the gateway (HRD today, HER2 next). It declares

* which slides it applies to (:class:`Applicability`: modality, stains, body part,
  optional series-description patterns) and what it needs (:class:`InputKind`: every
  slide of the case, or an H&E slide with an optional HER2 IHC slide of the same block);
* how to run on the slides a :class:`AnalysisRequest` names, returning its own typed
  result;
* how to turn that result into reports (:class:`AnalysisReport`: triage, DICOM SR,
  heatmap objects, FHIR Bundle, the ``result.json`` document) and into a catalog
  summary (:class:`AnalysisOutcome`).

The gateway never looks inside an analysis' result: it routes
(:func:`~ihgamp_core.analysis.routing.route`), opens the named slides, calls
:meth:`Analysis.run` and :meth:`Analysis.report`, and stores what the report holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import ParameterError
from ..report.outputs import HeatmapObject

if TYPE_CHECKING:  # annotations only: importing the contract stays light (the CLI, config)
    import numpy as np
    from fhir.resources.R4B.bundle import Bundle
    from numpy.typing import NDArray
    from pydicom.dataset import Dataset

    from ..report.context import OutputIds
    from ..report.outputs import Outputs
    from ..report.triage import Triage
    from ..slide.base import Slide

__all__ = [
    "Analysis",
    "ANALYSIS_NAME_RE",
    "AnalysisName",
    "AnalysisOutcome",
    "AnalysisReport",
    "AnalysisRequest",
    "AnalysisSpec",
    "Applicability",
    "HeatmapObject",
    "InputKind",
    "ModalityPath",
    "ReportOptions",
    "SOP_CLASSES",
    "SOP_CLASS_KINDS",
    "WSI_SOP_CLASS",
    "SeriesInput",
    "SeriesKind",
    "SlideRef",
    "SlideRole",
    "Stain",
    "check_analysis_name",
    "request_slides",
    "series_kind",
]


#: What an analysis name may be: a short lower-case slug (it keys jobs, results, output
#: folders and settings tables).
ANALYSIS_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")


def check_analysis_name(name: str) -> str:
    """``name`` if it is a valid analysis name (:data:`ANALYSIS_NAME_RE`).

    Raises
    ------
    ParameterError
        Otherwise.
    """
    if not isinstance(name, str) or not ANALYSIS_NAME_RE.fullmatch(name):
        raise ParameterError(
            f"analysis name {name!r}: 1-16 characters, lower-case letters, digits and '-', "
            "starting with a letter"
        )
    return name


class AnalysisName(StrEnum):
    """The analyses this engine ships (a site's own analyses use any valid name)."""

    HRD = "hrd"
    HER2 = "her2"


class Stain(StrEnum):
    """What a slide is stained with, as far as routing needs to know."""

    HE = "he"
    """Haematoxylin and eosin."""
    IHC_HER2 = "ihc-her2"
    """Immunohistochemistry for HER2 (ERBB2)."""
    IHC_OTHER = "ihc-other"
    """Immunohistochemistry for another marker."""
    UNKNOWN = "unknown"
    """Nothing in the headers, the vendor metadata or the configured rules says."""


class SeriesKind(StrEnum):
    """What a series of a study is, as far as routing needs to know (from its SOP class)."""

    SLIDE = "slide"
    """A whole-slide image (VL Whole Slide Microscopy)."""
    VOLUME = "volume"
    """A cross-sectional image series: CT, MR, PET (classic or enhanced)."""
    SEGMENTATION = "segmentation"
    """A DICOM Segmentation (e.g. a tumour delineated on a CT or MR volume)."""
    OTHER = "other"
    """Anything else (SR documents, secondary captures...): never an input."""


#: VL Whole Slide Microscopy Image Storage.
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"

#: SOP classes by series kind (what :func:`series_kind` recognises), by their PS3.4 names
#: in pydicom (``pydicom.uid``; a test holds these values equal to pydicom's: the strings
#: are written out so that importing the contract does not import pydicom).
SOP_CLASSES = {
    "VLWholeSlideMicroscopyImageStorage": WSI_SOP_CLASS,
    "CTImageStorage": "1.2.840.10008.5.1.4.1.1.2",
    "EnhancedCTImageStorage": "1.2.840.10008.5.1.4.1.1.2.1",
    "MRImageStorage": "1.2.840.10008.5.1.4.1.1.4",
    "EnhancedMRImageStorage": "1.2.840.10008.5.1.4.1.1.4.1",
    "PositronEmissionTomographyImageStorage": "1.2.840.10008.5.1.4.1.1.128",
    "EnhancedPETImageStorage": "1.2.840.10008.5.1.4.1.1.130",
    "SegmentationStorage": "1.2.840.10008.5.1.4.1.1.66.4",
    "Comprehensive3DSRStorage": "1.2.840.10008.5.1.4.1.1.88.34",
}
SOP_CLASS_KINDS: dict[str, SeriesKind] = {
    WSI_SOP_CLASS: SeriesKind.SLIDE,
    **{
        SOP_CLASSES[name]: SeriesKind.VOLUME
        for name in (
            "CTImageStorage",
            "EnhancedCTImageStorage",
            "MRImageStorage",
            "EnhancedMRImageStorage",
            "PositronEmissionTomographyImageStorage",
            "EnhancedPETImageStorage",
        )
    },
    SOP_CLASSES["SegmentationStorage"]: SeriesKind.SEGMENTATION,
}


def series_kind(sop_class_uid: str | None) -> SeriesKind:
    """The kind of a series from its SOP Class UID (:data:`SOP_CLASS_KINDS`)."""
    return SOP_CLASS_KINDS.get(str(sop_class_uid or ""), SeriesKind.OTHER)


class InputKind(StrEnum):
    """What an analysis needs from a case."""

    SLIDES = "slides"
    """Every slide of the case with an accepted stain, scored together (HRD)."""
    HE_WITH_OPTIONAL_IHC = "he-with-optional-ihc"
    """Per tissue block: an H&E slide, with the block's HER2 IHC slide when there is one."""
    SERIES = "series"
    """Every series of the case it reads (volumes, segmentations), in one job per study.

    The analysis pairs them itself (a segmentation names the volume it delineates)."""


class SlideRole(StrEnum):
    """The part a series plays in a request."""

    HE = "he"
    IHC = "ihc"
    VOLUME = "volume"
    SEGMENTATION = "segmentation"
    OTHER = "other"


@dataclass(frozen=True)
class SeriesInput:
    """A request's series that is not a slide: its instance files, for the analysis to read.

    Parameters
    ----------
    key : str
        Series Instance UID.
    kind : SeriesKind
        Volume or segmentation.
    paths : tuple of Path
        Its current instance files (headers and pixels; read them with pydicom,
        highdicom or SimpleITK).
    """

    key: str
    kind: SeriesKind
    paths: tuple[Path, ...]


class ModalityPath(StrEnum):
    """Which modalities an H&E + optional IHC analysis was run with."""

    DUAL = "dual"
    """Real H&E and real IHC of the same block."""
    HE_ONLY = "he-only-synthesised-ihc"
    """H&E only; the IHC is synthesised inside the model (never emitted)."""
    IHC_ONLY = "ihc-only"
    """IHC only; the H&E is synthesised inside the model (never emitted)."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ParameterError(message)


@dataclass(frozen=True)
class Applicability:
    """Which series an analysis applies to, and what it needs from them.

    Parameters
    ----------
    stains : frozenset of Stain
        Stains the analysis reads; never :attr:`Stain.UNKNOWN`. Required for slides,
        empty for an analysis that reads no slide.
    inputs : InputKind
        What the analysis needs from a case.
    modalities : frozenset of str
        DICOM Modality values (``SM`` = slide microscopy; ``CT``, ``MR``...).
    series_kinds : frozenset of SeriesKind
        The kinds of series it reads: slides (the default), or volumes and
        segmentations (with :attr:`InputKind.SERIES`).
    sop_classes : frozenset of str or None
        SOP Class UIDs it reads; ``None``: any of its series kinds.
    body_parts : frozenset of str or None
        DICOM Body Part Examined terms (``BREAST``); ``None`` accepts any, including
        an unknown one. A slide whose body part is unknown never matches a set.
    series_description_patterns : tuple of str
        Case-insensitive regular expressions; when given, only slides whose Series
        Description matches one are used.
    """

    stains: frozenset[Stain] = frozenset()
    inputs: InputKind = InputKind.SLIDES
    modalities: frozenset[str] = frozenset({"SM"})
    body_parts: frozenset[str] | None = None
    series_description_patterns: tuple[str, ...] = ()
    series_kinds: frozenset[SeriesKind] = frozenset({SeriesKind.SLIDE})
    sop_classes: frozenset[str] | None = None

    def __post_init__(self) -> None:
        _require(bool(self.series_kinds), "an analysis must read at least one kind of series")
        _require(SeriesKind.OTHER not in self.series_kinds, "'other' series are never inputs")
        slides = SeriesKind.SLIDE in self.series_kinds
        if self.inputs is InputKind.SERIES:
            _require(not slides, "slides are read per case or per block, not as SERIES")
            _require(not self.stains, "an analysis that reads no slide reads no stain")
            _require(
                SeriesKind.VOLUME not in self.series_kinds or "SM" not in self.modalities,
                "an analysis of volumes names their modalities (CT, MR, PT), not SM",
            )
        else:
            _require(self.series_kinds == {SeriesKind.SLIDE}, f"{self.inputs} analyses read slides")
            _require(bool(self.stains), "an analysis must accept at least one stain")
        _require(Stain.UNKNOWN not in self.stains, "an analysis cannot accept an unknown stain")
        _require(bool(self.modalities), "an analysis must accept at least one modality")
        if self.sop_classes is not None:
            _require(
                all(series_kind(uid) in self.series_kinds for uid in self.sop_classes),
                "every SOP class it reads must be of a series kind it reads",
            )
        if self.inputs is InputKind.HE_WITH_OPTIONAL_IHC:
            _require(
                self.stains <= {Stain.HE, Stain.IHC_HER2},
                "an H&E + optional IHC analysis reads H&E and HER2 IHC slides only",
            )
        if self.body_parts is not None:
            _require(bool(self.body_parts), "body_parts must be None (any) or non-empty")
            _require(
                all(p == p.upper() for p in self.body_parts),
                "body parts are DICOM Body Part Examined terms (upper case)",
            )
        for pattern in self.series_description_patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ParameterError(f"bad series-description pattern {pattern!r}: {exc}") from exc

    def accepts_description(self, description: str | None) -> bool:
        """Whether a Series Description passes the patterns (always, without patterns)."""
        if not self.series_description_patterns:
            return True
        return any(
            re.search(p, description or "", flags=re.IGNORECASE)
            for p in self.series_description_patterns
        )

    def accepts_body_part(self, body_part: str | None) -> bool:
        """Whether a slide's body part passes (any, when no set is declared)."""
        return self.body_parts is None or (body_part is not None and body_part in self.body_parts)

    def reads_sop_class(self, sop_class_uid: str | None) -> bool:
        """Whether a series of this SOP class could be an input (kind and class only)."""
        if series_kind(sop_class_uid) not in self.series_kinds:
            return False
        return self.sop_classes is None or str(sop_class_uid) in self.sop_classes


@dataclass(frozen=True)
class AnalysisSpec:
    """An analysis' name and applicability: all that routing needs.

    Parameters
    ----------
    name : str
        The analysis' name (:data:`ANALYSIS_NAME_RE`; the built-ins are
        :class:`AnalysisName`).
    applicability : Applicability
        What it applies to and needs.
    """

    name: str
    applicability: Applicability

    def __post_init__(self) -> None:
        check_analysis_name(self.name)


@dataclass(frozen=True)
class SlideRef:
    """One series named by a request: a slide, or a volume or segmentation series.

    Parameters
    ----------
    key : str
        The series' key in the study (Series Instance UID, or the vendor file's path).
    role : SlideRole
        H&E or IHC for slides; volume or segmentation for other series.
    block : str or None
        The tissue block the slide was cut from, when known.
    """

    key: str
    role: SlideRole
    block: str | None = None


@dataclass(frozen=True)
class AnalysisRequest:
    """One job for one analysis: the slides to run on, and how.

    Parameters
    ----------
    analysis : str
        Which analysis (its name).
    slides : tuple of SlideRef
        The slides, H&E first.
    path : ModalityPath or None
        For H&E + optional IHC analyses: which modalities are present.
    pairing : str or None
        How H&E and IHC were paired: ``block`` (same block identifier) or
        ``single-pair`` (one H&E and one IHC slide in the study, no block identifiers;
        the engine's tissue registration then checks that they match).
    """

    analysis: str
    slides: tuple[SlideRef, ...]
    path: ModalityPath | None = None
    pairing: str | None = None

    def __post_init__(self) -> None:
        check_analysis_name(self.analysis)
        _require(bool(self.slides), "a request needs at least one slide")
        keys = [s.key for s in self.slides]
        _require(len(set(keys)) == len(keys), "a request names each slide once")

    @property
    def job_key(self) -> str:
        """Stable identity of the job within the study: analysis, plus the block if any."""
        blocks = sorted({s.block for s in self.slides if s.block})
        return f"{self.analysis}:{blocks[0]}" if len(blocks) == 1 else str(self.analysis)

    def slide_keys(self, role: SlideRole | None = None) -> tuple[str, ...]:
        """Keys of the request's slides (of one role, when given)."""
        return tuple(s.key for s in self.slides if role is None or s.role is role)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (for the catalog and logs; no patient data)."""
        return {
            "analysis": str(self.analysis),
            "job_key": self.job_key,
            "path": str(self.path) if self.path else None,
            "pairing": self.pairing,
            "slides": [{"key": s.key, "role": str(s.role), "block": s.block} for s in self.slides],
        }


def request_slides(
    request: AnalysisRequest, inputs: Mapping[str, Slide | SeriesInput]
) -> dict[str, Slide]:
    """The request's slides from the opened inputs, by key, in the request's order.

    Raises
    ------
    ParameterError
        If a series the request names was not opened, or is not a slide.
    """
    missing = [k for k in request.slide_keys() if k not in inputs]
    if missing:
        raise ParameterError(f"slides named by the request were not opened: {missing}")
    out: dict[str, Slide] = {}
    for key in request.slide_keys():
        value = inputs[key]
        if isinstance(value, SeriesInput):
            raise ParameterError(f"series {key} is a {value.kind}, not a slide")
        out[key] = value
    return out


@dataclass(frozen=True)
class AnalysisOutcome:
    """What the catalog and the status page need to know about a result.

    Parameters
    ----------
    analysis : str
        Which analysis.
    call : str
        The case-level call (``hrd-likely``, ``her2-2+``, ``no-call``...).
    value : float or None
        The headline number (HRD probability; probability of the HER2 category).
    qc_flags : tuple of str
        QC flags; a result with flags is a ``no-call``.
    model_key : str
        Which model produced it (re-scoring with another model gives new outputs).
    demo : bool
        Whether the DEMO model produced it.
    path : ModalityPath or None
        The modality path, for H&E + optional IHC analyses.
    threshold : float or None
        The operating threshold ``value`` is called against, when the analysis has one.
    """

    analysis: str
    call: str
    value: float | None
    qc_flags: tuple[str, ...]
    model_key: str
    demo: bool
    path: ModalityPath | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class ReportOptions:
    """What report building needs besides the result and the headers.

    Parameters
    ----------
    thumbnails : mapping
        Slide thumbnails by slide key, for the PNG overlays.
    patient_system : callable or None
        DICOM Issuer of Patient ID -> FHIR identifier system; ``None`` for the default.
    not_validated_patterns : tuple of str or None
        Histology patterns an analysis is not validated for (HRD's triage); ``None``
        keeps the analysis' default.
    supersedes : Supersedes or None
        The earlier result of the same analysis (and block) that this one replaces: the
        SR names it as its predecessor, the Observation amends it in place.
    """

    thumbnails: Mapping[str, NDArray[np.uint8]] = field(default_factory=dict)
    patient_system: Callable[[str | None], str] | None = None
    not_validated_patterns: tuple[str, ...] | None = None
    supersedes: Any = None


@dataclass(frozen=True)
class AnalysisReport:
    """Everything the gateway stores and sends for one analysis result.

    Parameters
    ----------
    analysis : str
        Which analysis.
    outcome : AnalysisOutcome
        The catalog summary.
    document : dict
        The ``result.json`` content (result, triage, notes, output identifiers).
    triage : Triage
        The triage outcome (category, text, intended-use statement).
    key : str
        The result key (deliveries are idempotent on it).
    sr : pydicom.dataset.Dataset
        The DICOM SR.
    heatmaps : tuple of HeatmapObject
        Heatmap objects, one per slide with a map.
    bundle : fhir.resources.R4B.bundle.Bundle or None
        The FHIR transaction Bundle; None when the study has no Patient ID.
    observation_identifier : str
        The Observation's identifier value (``urn:ihgamp:observation``).
    observation_code : tuple of str
        ``(system, code)`` of the Observation's standard code, for the FHIR endpoint's
        ``code`` search.
    notes : tuple of str
        Why an output is missing.
    ids : OutputIds or None
        Every output identifier (SR, heatmaps, Observation, Device).
    """

    analysis: str
    outcome: AnalysisOutcome
    document: dict[str, Any]
    triage: Triage
    key: str
    sr: Dataset
    heatmaps: tuple[HeatmapObject, ...]
    bundle: Bundle | None
    observation_identifier: str
    observation_code: tuple[str, str]
    notes: tuple[str, ...] = ()
    ids: OutputIds | None = None

    @classmethod
    def from_outputs(
        cls,
        outputs: Outputs[Any],
        outcome: AnalysisOutcome,
        document: dict[str, Any],
        observation_code: tuple[str, str],
    ) -> AnalysisReport:
        """The report of an analysis' :class:`~ihgamp_core.report.outputs.Outputs`."""
        return cls(
            analysis=outcome.analysis,
            outcome=outcome,
            document=document,
            triage=outputs.triage,
            key=outputs.ids.key,
            sr=outputs.sr,
            heatmaps=outputs.heatmaps,
            bundle=outputs.bundle,
            observation_identifier=outputs.ids.observation_identifier,
            observation_code=observation_code,
            notes=outputs.notes,
            ids=outputs.ids,
        )


R = TypeVar("R")


class Analysis(Protocol[R]):
    """One model behind the gateway.

    Implementations: :class:`~ihgamp_core.hrd.analysis.HrdAnalysis`,
    :class:`~ihgamp_core.her2.analysis.Her2Analysis`.
    """

    @property
    def spec(self) -> AnalysisSpec:
        """Name and applicability (what routing reads)."""

    @property
    def model_key(self) -> str:
        """Which model this is (head/weights/version)."""

    def run(
        self, request: AnalysisRequest, slides: Mapping[str, Slide | SeriesInput], case_id: str
    ) -> R:
        """Run on the request's series (opened by the caller, keyed by :attr:`SlideRef.key`).

        Slides come opened (:class:`Slide`); other series as their files
        (:class:`SeriesInput`).

        Raises
        ------
        IhgampError
            For unusable slides or inputs (permanent: retrying cannot help).
        """

    def outcome(self, result: R) -> AnalysisOutcome:
        """The catalog summary of a result."""

    def report(self, result: R, context: Any, options: ReportOptions) -> AnalysisReport:
        """Build triage, SR, heatmaps, FHIR and the ``result.json`` document.

        ``context`` is the :class:`~ihgamp_core.report.ReportContext` of the request's
        slides, in the order of :attr:`AnalysisRequest.slides`.
        """
