"""Routing: which analyses apply to a study, on which slides, and what is refused.

:func:`route` is a pure function of the study's series metadata and the enabled
analyses' declarations; it opens no file. Its :class:`RoutingDecision` lists

* **requests**: one per job (per analysis, and per tissue block for H&E + optional IHC
  analyses), each naming its slides and modality path; an analysis that reads volumes
  and segmentations (:attr:`InputKind.SERIES`) gets one request on every series it
  reads;
* **refusals**: slides or pairs that cannot be used, each with a typed reason and a
  message for people (nothing is dropped silently);
* **skipped**: analyses that do not apply, and why (informational);
* **ignored**: series no enabled analysis reads (not an error).

A study that matches nothing is ``no_analysis_applies``: a normal outcome, not an error.

Pairing rules for H&E + optional IHC analyses (HER2):

1. Slides with an unknown stain are refused (``unknown-stain``) and never scored; so
   are slides whose description names H&E and an immunostain at once
   (``conflicting-stain``).
2. When every H&E and HER2-IHC slide names its block: per block, H&E + IHC ->
   ``dual``; H&E alone -> ``he-only-synthesised-ihc``; IHC alone -> ``ihc-only`` if the
   study holds no H&E slide at all, otherwise refused (``unpaired-ihc``), except that one
   H&E block without IHC plus one IHC block without H&E are refused together as
   ``mismatched-blocks`` (most likely the same case mislabelled, never to be scored as
   if the IHC were missing). Two H&E or two IHC slides of one block are refused
   (``ambiguous-pairing``): the engine does not choose between them.
3. When block identifiers are missing: exactly one H&E and one IHC slide -> ``dual``
   with pairing ``single-pair`` (the engine's tissue registration then refuses
   sections that do not match); H&E slides only -> one ``he-only`` request each; IHC
   slides only -> one ``ihc-only`` request each; any other mix is refused
   (``ambiguous-pairing``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..errors import ParameterError
from .contract import (
    AnalysisRequest,
    AnalysisSpec,
    Applicability,
    InputKind,
    ModalityPath,
    SeriesKind,
    SlideRef,
    SlideRole,
    Stain,
)
from .metadata import SeriesMetadata

__all__ = ["Refusal", "RefusalKind", "RoutingDecision", "RoutingLimits", "Skip", "route"]


class RefusalKind(StrEnum):
    """Why slides cannot be scored."""

    UNKNOWN_STAIN = "unknown-stain"
    CONFLICTING_STAIN = "conflicting-stain"
    UNPAIRED_IHC = "unpaired-ihc"
    MISMATCHED_BLOCKS = "mismatched-blocks"
    AMBIGUOUS_PAIRING = "ambiguous-pairing"
    TOO_MANY_SLIDES = "too-many-slides"


@dataclass(frozen=True)
class Refusal:
    """Slides that cannot be scored, and why.

    Parameters
    ----------
    kind : RefusalKind
        The reason.
    slides : tuple of str
        Keys of the slides concerned.
    message : str
        One line for people: what is wrong and what to do.
    analysis : str or None
        The analysis concerned (None: every analysis).
    """

    kind: RefusalKind
    slides: tuple[str, ...]
    message: str
    analysis: str | None = None


@dataclass(frozen=True)
class RoutingLimits:
    """How much work one study may ask for (a site setting; None: no limit).

    Parameters
    ----------
    max_slides : int or None
        Slides per study; a study with more has every slide refused
        (``too-many-slides``): no slide analysis runs on an arbitrary subset of a case
        (analyses of its volumes still run).
    max_requests : int or None
        Jobs per analysis and study (the blocks of a per-block analysis such as HER2);
        an analysis that would need more is refused for the study.
    """

    max_slides: int | None = None
    max_requests: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_slides", "max_requests"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ParameterError(f"{name} must be at least 1 (or None)")


@dataclass(frozen=True)
class Skip:
    """An analysis that does not apply to the study, and why."""

    analysis: str
    reason: str


@dataclass(frozen=True)
class RoutingDecision:
    """The outcome of routing one study (see the module docstring)."""

    requests: tuple[AnalysisRequest, ...]
    refusals: tuple[Refusal, ...] = ()
    skipped: tuple[Skip, ...] = ()
    ignored: tuple[str, ...] = ()

    @property
    def no_analysis_applies(self) -> bool:
        """Nothing to run and nothing refused: the study is not for these analyses."""
        return not self.requests and not self.refusals

    def for_analysis(self, name: str) -> tuple[AnalysisRequest, ...]:
        """The requests of one analysis."""
        return tuple(r for r in self.requests if r.analysis == name)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (catalog, logs, status page; no patient data)."""
        return {
            "no_analysis_applies": self.no_analysis_applies,
            "requests": [r.to_dict() for r in self.requests],
            "refusals": [
                {
                    "kind": str(r.kind),
                    "analysis": str(r.analysis) if r.analysis else None,
                    "slides": list(r.slides),
                    "message": r.message,
                }
                for r in self.refusals
            ],
            "skipped": [{"analysis": str(s.analysis), "reason": s.reason} for s in self.skipped],
            "ignored": list(self.ignored),
        }


def _role(stain: Stain) -> SlideRole:
    return SlideRole.HE if stain is Stain.HE else SlideRole.IHC


def _ref(meta: SeriesMetadata) -> SlideRef:
    return SlideRef(meta.key, _role(meta.stain), meta.block)


def _names(slides: Sequence[SeriesMetadata]) -> str:
    return ", ".join(
        f"{s.series_description or s.key}" + (f" (block {s.block})" if s.block else "")
        for s in slides
    )


def route(
    slides: Sequence[SeriesMetadata],
    analyses: Sequence[AnalysisSpec],
    limits: RoutingLimits | None = None,
) -> RoutingDecision:
    """Decide which analyses run on which slides of one study.

    Parameters
    ----------
    slides : sequence of SeriesMetadata
        One entry per series of the study (slides and anything else).
    analyses : sequence of AnalysisSpec
        The enabled analyses, in the order their requests should be listed.
    limits : RoutingLimits, optional
        Caps on the work one study may ask for.

    Returns
    -------
    RoutingDecision
    """
    limits = limits or RoutingLimits()
    slide_specs = [a for a in analyses if a.applicability.inputs is not InputKind.SERIES]
    modalities = {m for a in slide_specs for m in a.applicability.modalities}
    wsi = [s for s in slides if s.kind is SeriesKind.SLIDE and (s.modality or "SM") in modalities]
    others = [s for s in slides if s.kind is not SeriesKind.SLIDE]
    read = {
        s.key for a in analyses for s in others if _reads_series(a.applicability, s, body=False)
    }
    ignored = tuple(s.key for s in slides if s not in wsi and s.key not in read)
    refusals: list[Refusal] = []
    too_many = limits.max_slides is not None and len(wsi) > limits.max_slides
    if too_many:  # no slide analysis runs on an arbitrary subset of the case
        refusals.append(
            Refusal(
                RefusalKind.TOO_MANY_SLIDES,
                tuple(s.key for s in wsi),
                f"the study holds {len(wsi)} slides, more than the {limits.max_slides} a study "
                "may have (analyses.max_slides_per_study); not scored: split the case, or "
                "raise the limit and rescore",
            )
        )
    for s in (s for s in wsi if s.stain is Stain.UNKNOWN and not too_many):
        refusals.append(_stain_refusal(s))
    known = [s for s in wsi if s.stain is not Stain.UNKNOWN]
    requests: list[AnalysisRequest] = []
    skipped: list[Skip] = []
    for spec in analyses:
        a = spec.applicability
        if a.inputs is InputKind.SERIES:
            request, skip = _series_request(spec, others)
            requests.extend([request] if request else [])
            skipped.extend([skip] if skip else [])
            continue
        if too_many:
            continue
        usable = [
            s
            for s in known
            if (s.modality or "SM") in a.modalities
            and s.stain in a.stains
            and a.accepts_description(s.series_description)
        ]
        in_scope = [s for s in usable if a.accepts_body_part(s.body_part)]
        if not in_scope:
            none = "no slide with a stain it reads (" + ", ".join(sorted(a.stains)) + ")"
            skipped.append(Skip(spec.name, _why_not(a, usable, none)))
            continue
        if a.inputs is InputKind.SLIDES:
            requests.append(AnalysisRequest(spec.name, tuple(_ref(s) for s in in_scope)))
            continue
        made, refused = _pair(spec.name, in_scope)
        if limits.max_requests is not None and len(made) > limits.max_requests:
            refused = [
                Refusal(
                    RefusalKind.TOO_MANY_SLIDES,
                    tuple(k for r in made for k in r.slide_keys()),
                    f"{spec.name} would run on {len(made)} blocks of this study, more than "
                    f"the {limits.max_requests} allowed (analyses.max_blocks_per_study); not "
                    "scored: raise the limit and rescore",
                    spec.name,
                ),
                *refused,
            ]
            made = []
        requests.extend(made)
        refusals.extend(refused)
    return RoutingDecision(tuple(requests), tuple(refusals), tuple(skipped), ignored)


_SERIES_ROLES = {
    SeriesKind.VOLUME: SlideRole.VOLUME,
    SeriesKind.SEGMENTATION: SlideRole.SEGMENTATION,
}


def _reads_series(a: Applicability, s: SeriesMetadata, body: bool = True) -> bool:
    """Whether a non-slide analysis reads a series (kind, SOP class, modality, text).

    The modality is checked on volumes (``CT``, ``MR``); a segmentation (Modality ``SEG``)
    is read for its kind and SOP class.
    """
    return (
        a.inputs is InputKind.SERIES
        and s.kind in a.series_kinds
        and (a.sop_classes is None or s.sop_class_uid in a.sop_classes)
        and (s.kind is not SeriesKind.VOLUME or (s.modality or "") in a.modalities)
        and a.accepts_description(s.series_description)
        and (not body or a.accepts_body_part(s.body_part))
    )


def _why_not(a: Applicability, usable: Sequence[SeriesMetadata], none: str) -> str:
    """Why an analysis is skipped: the body part of what it could read, else ``none``."""
    if not usable:
        return none
    parts = sorted({s.body_part or "unknown" for s in usable})
    return f"body part {', '.join(parts)} is not among {sorted(a.body_parts or [])}"


def _series_request(
    spec: AnalysisSpec, series: Sequence[SeriesMetadata]
) -> tuple[AnalysisRequest | None, Skip | None]:
    """One request on every series a non-slide analysis reads, or why it is skipped."""
    a = spec.applicability
    usable = [s for s in series if _reads_series(a, s, body=False)]
    in_scope = [s for s in usable if a.accepts_body_part(s.body_part)]
    if not in_scope:
        kinds = ", ".join(sorted(a.series_kinds))
        none = f"no series it reads ({kinds}; modality {', '.join(sorted(a.modalities))})"
        return None, Skip(spec.name, _why_not(a, usable, none))
    refs = tuple(
        SlideRef(s.key, _SERIES_ROLES.get(s.kind, SlideRole.OTHER))
        for s in sorted(in_scope, key=lambda s: (s.kind != SeriesKind.VOLUME, s.key))
    )
    return AnalysisRequest(spec.name, refs), None


def _stain_refusal(slide: SeriesMetadata) -> Refusal:
    """Why a slide of unknown stain is not scored, in words that say what to do."""
    said = "; ".join(slide.stain_text)[:120]
    if slide.stain_conflict:
        classes = " and ".join(str(c) for c in slide.stain_conflict)
        return Refusal(
            RefusalKind.CONFLICTING_STAIN,
            (slide.key,),
            f"slide {_names([slide])}: its stain description ({said!r}) names {classes} at "
            "once; not scored: correct the slide's specimen description, or configure a stain "
            "rule that overrides it",
        )
    if slide.stain_text:
        return Refusal(
            RefusalKind.UNKNOWN_STAIN,
            (slide.key,),
            f"slide {_names([slide])}: stain {said!r} is not one the gateway knows (H&E, HER2 "
            "or other immunostains); not scored: configure a stain rule (field 'stain') if "
            "it is one of those",
        )
    return Refusal(
        RefusalKind.UNKNOWN_STAIN,
        (slide.key,),
        f"slide {_names([slide])}: stain unknown (no staining step in the DICOM specimen "
        "description, no vendor metadata, no configured stain rule); configure a stain rule "
        "or a default stain to have it scored",
    )


def _pair(
    name: str, slides: Sequence[SeriesMetadata]
) -> tuple[list[AnalysisRequest], list[Refusal]]:
    he = sorted((s for s in slides if s.stain is Stain.HE), key=lambda s: s.key)
    ihc = sorted((s for s in slides if s.stain is Stain.IHC_HER2), key=lambda s: s.key)
    if all(s.block for s in he + ihc):
        return _pair_by_block(name, he, ihc)
    requests: list[AnalysisRequest] = []
    if len(he) == 1 and len(ihc) == 1:
        pair = (_ref(he[0]), _ref(ihc[0]))
        return [AnalysisRequest(name, pair, ModalityPath.DUAL, "single-pair")], []
    if not ihc:
        requests = [AnalysisRequest(name, (_ref(s),), ModalityPath.HE_ONLY) for s in he]
        return requests, []
    if not he:
        requests = [AnalysisRequest(name, (_ref(s),), ModalityPath.IHC_ONLY) for s in ihc]
        return requests, []
    refusal = Refusal(
        RefusalKind.AMBIGUOUS_PAIRING,
        tuple(s.key for s in he + ihc),
        f"{len(he)} H&E and {len(ihc)} HER2 IHC slides without block identifiers: cannot tell "
        "which belong together; record the block in the specimen description or configure "
        "routing.block_pattern",
        name,
    )
    return [], [refusal]


def _pair_by_block(
    name: str, he: Sequence[SeriesMetadata], ihc: Sequence[SeriesMetadata]
) -> tuple[list[AnalysisRequest], list[Refusal]]:
    by_block: dict[str, tuple[list[SeriesMetadata], list[SeriesMetadata]]] = defaultdict(
        lambda: ([], [])
    )
    for s in he:
        by_block[str(s.block)][0].append(s)
    for s in ihc:
        by_block[str(s.block)][1].append(s)
    requests: list[AnalysisRequest] = []
    refusals: list[Refusal] = []
    he_alone = [b for b, (h, i) in by_block.items() if h and not i]
    ihc_alone = [b for b, (h, i) in by_block.items() if i and not h]
    mismatched = bool(he) and len(he_alone) == 1 and len(ihc_alone) == 1
    if mismatched:
        h_slides, i_slides = by_block[he_alone[0]][0], by_block[ihc_alone[0]][1]
        refusals.append(
            Refusal(
                RefusalKind.MISMATCHED_BLOCKS,
                tuple(s.key for s in h_slides + i_slides),
                f"H&E slide {_names(h_slides)} and HER2 IHC slide {_names(i_slides)} come from "
                "different blocks: not scored (neither as a pair nor as if the IHC were "
                "missing); check the slide labels or send the slides of the same block",
                name,
            )
        )
    for block in sorted(by_block):
        h_slides, i_slides = by_block[block]
        if mismatched and block in (he_alone[0], ihc_alone[0]):
            continue
        if len(h_slides) > 1 or len(i_slides) > 1:
            refusals.append(
                Refusal(
                    RefusalKind.AMBIGUOUS_PAIRING,
                    tuple(s.key for s in h_slides + i_slides),
                    f"block {block} has {len(h_slides)} H&E and {len(i_slides)} HER2 IHC slides: "
                    "the engine does not choose between them; keep one slide per stain and "
                    "rescore",
                    name,
                )
            )
        elif h_slides and i_slides:
            pair = (_ref(h_slides[0]), _ref(i_slides[0]))
            requests.append(AnalysisRequest(name, pair, ModalityPath.DUAL, "block"))
        elif h_slides:
            requests.append(AnalysisRequest(name, (_ref(h_slides[0]),), ModalityPath.HE_ONLY))
        elif not he:
            requests.append(AnalysisRequest(name, (_ref(i_slides[0]),), ModalityPath.IHC_ONLY))
        else:
            refusals.append(
                Refusal(
                    RefusalKind.UNPAIRED_IHC,
                    tuple(s.key for s in i_slides),
                    f"HER2 IHC slide {_names(i_slides)} has no H&E slide of block {block} in "
                    "this study: not scored; send the H&E of that block, or the IHC alone in "
                    "its own study",
                    name,
                )
            )
    return requests, refusals
