"""What routing reads about a slide: modality, stain, body part, block.

Sources, first found wins (each configurable rule can be made to win instead):

* **Stain**: the DICOM Specimen Preparation Sequence (a ``Staining`` step's ``Using
  substance`` items, coded or text) -> a vendor slide's metadata (property values
  whose key names a stain, marker or antibody; then descriptions, titles and comments)
  -> configured :class:`StainRule` patterns over the Series/Study Description,
  Container Identifier, source path or the stain description itself -> the configured
  default -> :attr:`Stain.UNKNOWN`. The default applies only to slides whose headers
  carry *no* stain description: a description that names a stain this module does not
  know (PAS, trichrome, a code nobody recognises) stays unknown (routing refuses it as
  ``unknown-stain``) unless a site rule says what it is, and a description that names
  H&E *and* an immunostain on one slide is *conflicting* (refused as
  ``conflicting-stain``).
* **Body part**: Body Part Examined -> the specimen's Primary Anatomic Structure
  codes -> "breast"/"mamma" in the specimen or study descriptions -> the configured
  default.
* **Block**: the Parent Specimen Identifier of the sampling step that produced the
  slide's specimen (the DICOM specimen chain: part -> block -> slide) -> the
  configured ``block_pattern`` (a regular expression with a group named ``block``)
  over the Container Identifier, Specimen Identifier, Series Description or source.

Stain words (case-insensitive): a HER2 marker (``HER2``, ``ERBB2``, ``c-erbB-2``,
``HercepTest``, clones ``4B5``, ``CB11``, ``A0485``, ``SP3``) makes ``ihc-her2``; any
other immunostain word (antibody, DAB, diaminobenzidine, IHC, immunohisto...) makes
``ihc-other``; haematoxylin *and* eosin (or the upper-case abbreviations ``H&E``, ``HE``,
``H+E``, ``HES``) make ``he``. Nothing else is guessed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..errors import ParameterError
from .contract import SeriesKind, Stain, series_kind

if TYPE_CHECKING:  # headers are read through their attributes: pydicom is not imported here
    from pydicom.dataset import Dataset

__all__ = [
    "MetadataRules",
    "SeriesMetadata",
    "StainRule",
    "classify_stain",
    "stain_classes",
    "series_metadata_from_dataset",
    "series_metadata_from_properties",
]

_HER2 = re.compile(
    r"\bHER[- ]?2\b|HER2/neu|\bERBB2\b|c-?erb-?B-?2|herceptest|\b4B5\b|\bCB11\b|\bA0485\b|\bSP3\b",
    re.IGNORECASE,
)
_IHC = re.compile(
    r"antibod|\bDAB\b|diaminobenzidine|\bIHC\b|immuno[- ]?histo|immunostain|immune stain|"
    r"\banti-",
    re.IGNORECASE,
)
_HEMATOXYLIN = re.compile(r"ha?ematoxylin", re.IGNORECASE)
_EOSIN = re.compile(r"eosin", re.IGNORECASE)
_HE_ABBREVIATION = re.compile(r"\bH&E\b|\bHE\b|\bH\+E\b|\bHES\b")  # case-sensitive
_BREAST = re.compile(r"breast|mamma|mammary", re.IGNORECASE)

#: SNOMED CT codes of anatomic structures -> DICOM Body Part Examined terms.
_ANATOMY_CODES = {"76752008": "BREAST", "80248007": "BREAST"}
# Concept codes used in the Specimen Preparation Step Content Item Sequence.
_PROCESSING_TYPE = "111701"
_USING_SUBSTANCE = "424361007"
_STAINING = "127790008"
_SAMPLING = "433465004"
_SPECIMEN_IDENTIFIER = "121041"
_PARENT_IDENTIFIER = "111705"

Field = Literal[
    "series_description", "study_description", "container_identifier", "source", "stain"
]
_FIELDS: tuple[Field, ...] = (
    "series_description",
    "study_description",
    "container_identifier",
    "source",
    "stain",
)


def stain_classes(texts: Iterable[str]) -> frozenset[Stain]:
    """Every stain class the descriptions name (see the module docstring).

    A HER2 marker makes ``ihc-her2`` (its antibody words do not add ``ihc-other``); other
    immunostain words ``ihc-other``; haematoxylin *and* eosin, or an H&E abbreviation,
    ``he``. Haematoxylin alone is the counterstain of an immunostain, not H&E.
    """
    joined = " | ".join(t for t in texts if t)
    found: set[Stain] = set()
    if _HER2.search(joined):
        found.add(Stain.IHC_HER2)
    elif _IHC.search(joined):
        found.add(Stain.IHC_OTHER)
    if (_HEMATOXYLIN.search(joined) and _EOSIN.search(joined)) or _HE_ABBREVIATION.search(joined):
        found.add(Stain.HE)
    return frozenset(found)


def classify_stain(texts: Iterable[str]) -> Stain:
    """Classify stain descriptions (see the module docstring).

    Parameters
    ----------
    texts : iterable of str
        Substance names, stain descriptions.

    Returns
    -------
    Stain
        ``UNKNOWN`` when the texts name no stain this function recognises, or more than
        one (:func:`stain_classes` tells which).
    """
    found = stain_classes(texts)
    return next(iter(found)) if len(found) == 1 else Stain.UNKNOWN


@dataclass(frozen=True)
class StainRule:
    """A configured stain rule: ``pattern`` found in ``fields`` means ``stain``.

    Parameters
    ----------
    pattern : str
        Case-insensitive regular expression.
    stain : Stain
        The stain it means (not ``UNKNOWN``).
    fields : tuple of str
        Where to look: ``series_description``, ``study_description``,
        ``container_identifier``, ``source``, ``stain`` (the stain description the
        headers carry, e.g. to name a site's own stain).
    overrides : bool
        Apply before the headers (for sites whose scanners write a wrong stain).
    """

    pattern: str
    stain: Stain
    fields: tuple[Field, ...] = ("series_description", "container_identifier")
    overrides: bool = False

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ParameterError(f"bad stain rule pattern {self.pattern!r}: {exc}") from exc
        if self.stain is Stain.UNKNOWN:
            raise ParameterError("a stain rule must name a stain")
        unknown = set(self.fields) - set(_FIELDS)
        if not self.fields or unknown:
            raise ParameterError(f"stain rule fields must be among {list(_FIELDS)}")

    def matches(self, values: Mapping[str, str | None]) -> bool:
        """Whether the pattern occurs in one of the rule's fields."""
        return any(
            re.search(self.pattern, values.get(f) or "", flags=re.IGNORECASE) for f in self.fields
        )


@dataclass(frozen=True)
class MetadataRules:
    """Site configuration for reading slide metadata.

    Parameters
    ----------
    stain_rules : tuple of StainRule
        Tried in order when the headers say nothing (or first, for ``overrides``).
    block_pattern : str or None
        Regular expression with a group named ``block``, tried on the Container
        Identifier, Specimen Identifier, Series Description and source, in that order,
        when the specimen chain names no block.
    default_stain : Stain or None
        The stain of slides whose headers carry no stain description at all (e.g.
        ``he`` for a site that scans only H&E); ``None`` leaves them ``unknown``
        (routing then refuses them). A description the gateway does not recognise is
        never replaced by the default.
    default_body_part : str or None
        The body part of slides nothing else describes (a breast-only service).
    """

    stain_rules: tuple[StainRule, ...] = ()
    block_pattern: str | None = None
    default_stain: Stain | None = None
    default_body_part: str | None = None

    def __post_init__(self) -> None:
        if self.block_pattern is not None:
            try:
                compiled = re.compile(self.block_pattern)
            except re.error as exc:
                raise ParameterError(f"bad block pattern {self.block_pattern!r}: {exc}") from exc
            if "block" not in compiled.groupindex:
                raise ParameterError(
                    "the block pattern needs a group named 'block': (?P<block>...)"
                )
        if self.default_stain is Stain.UNKNOWN:
            raise ParameterError("default_stain must name a stain (or be None)")
        if self.default_body_part is not None and self.default_body_part != (
            self.default_body_part.upper()
        ):
            raise ParameterError(
                "default_body_part is a DICOM Body Part Examined term (upper case)"
            )


@dataclass(frozen=True)
class SeriesMetadata:
    """What routing knows about one series (no patient data).

    Parameters
    ----------
    key : str
        Series Instance UID (DICOM) or the file path (vendor slides).
    modality : str or None
        DICOM Modality (``SM`` for slides; vendor slides are ``SM``).
    stain : Stain
        The slide's stain (:attr:`Stain.UNKNOWN` for series that are not slides).
    stain_source : str
        Where the stain came from: ``specimen-preparation``, ``vendor-metadata``,
        ``rule``, ``default`` or ``none``.
    body_part : str or None
        DICOM Body Part Examined term, when known.
    block : str or None
        The tissue block the slide was cut from, when known.
    series_description : str or None
        Series Description.
    stain_text : tuple of str
        The stain descriptions read (for messages).
    stain_conflict : tuple of Stain
        The classes a conflicting description named (H&E and an immunostain on one
        slide); empty otherwise. The stain is then ``UNKNOWN``.
    kind : SeriesKind
        Slide, volume, segmentation or other (from the SOP class).
    sop_class_uid : str or None
        The series' SOP Class UID, when read from a DICOM header.
    """

    key: str
    modality: str | None
    stain: Stain
    stain_source: str = "none"
    body_part: str | None = None
    block: str | None = None
    series_description: str | None = None
    stain_text: tuple[str, ...] = ()
    stain_conflict: tuple[Stain, ...] = ()
    kind: SeriesKind = SeriesKind.SLIDE
    sop_class_uid: str | None = None


def _text(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _code_value(item: Dataset, keyword: str) -> str | None:
    seq = item.get(keyword) or []
    return _text(seq[0].get("CodeValue")) if seq else None


def _item_value(item: Dataset) -> str | None:
    if item.get("ValueType") == "CODE":
        seq = item.get("ConceptCodeSequence") or []
        return _text(seq[0].get("CodeMeaning")) if seq else None
    return _text(item.get("TextValue"))


@dataclass(frozen=True)
class _Step:
    processing: str | None
    specimen: str | None
    parent: str | None
    substances: tuple[str, ...]


def _steps(specimen: Dataset) -> list[_Step]:
    steps = []
    for prep in specimen.get("SpecimenPreparationSequence") or []:
        processing = identifier = parent = None
        substances: list[str] = []
        for item in prep.get("SpecimenPreparationStepContentItemSequence") or []:
            name = _code_value(item, "ConceptNameCodeSequence")
            if name == _PROCESSING_TYPE:
                processing = _code_value(item, "ConceptCodeSequence")
            elif name == _SPECIMEN_IDENTIFIER:
                identifier = _item_value(item)
            elif name == _PARENT_IDENTIFIER:
                parent = _item_value(item)
            elif name == _USING_SUBSTANCE:
                value = _item_value(item)
                if value:
                    substances.append(value)
        steps.append(_Step(processing, identifier, parent, tuple(substances)))
    return steps


def _specimens(ds: Dataset) -> list[Dataset]:
    return list(ds.get("SpecimenDescriptionSequence") or [])


def _header_stain_texts(ds: Dataset) -> list[str]:
    texts: list[str] = []
    for specimen in _specimens(ds):
        for step in _steps(specimen):
            if step.processing == _STAINING or step.substances:
                texts.extend(step.substances)
    return texts


def _header_block(ds: Dataset) -> str | None:
    for specimen in _specimens(ds):
        own = _text(specimen.get("SpecimenIdentifier"))
        samplings = [s for s in _steps(specimen) if s.processing == _SAMPLING and s.parent]
        for step in samplings:
            if own is not None and step.specimen == own:
                return step.parent
    return None


def _header_body_part(ds: Dataset) -> str | None:
    body = _text(ds.get("BodyPartExamined"))
    if body:
        return body.upper()
    for specimen in _specimens(ds):
        for code in specimen.get("PrimaryAnatomicStructureSequence") or []:
            mapped = _ANATOMY_CODES.get(str(code.get("CodeValue", "")))
            if mapped:
                return mapped
            meaning = _text(code.get("CodeMeaning"))
            if meaning and _BREAST.search(meaning):
                return "BREAST"
        for keyword in ("SpecimenShortDescription", "SpecimenDetailedDescription"):
            text = _text(specimen.get(keyword))
            if text and _BREAST.search(text):
                return "BREAST"
    study = _text(ds.get("StudyDescription"))
    if study and _BREAST.search(study):
        return "BREAST"
    return None


def _resolve(
    key: str,
    modality: str | None,
    fields: Mapping[str, str | None],
    found_stain: tuple[Sequence[str], Sequence[str], str],
    body_part: str | None,
    block: str | None,
    block_candidates: Sequence[str | None],
    rules: MetadataRules,
) -> SeriesMetadata:
    declared, incidental, source = found_stain
    texts = [*declared, *incidental]
    classes = stain_classes(declared) if declared else stain_classes(incidental)
    stain = next(iter(classes)) if len(classes) == 1 else Stain.UNKNOWN
    conflict = tuple(sorted(classes)) if len(classes) > 1 else ()
    values = {**fields, "stain": " | ".join(texts) or None}
    for rule in rules.stain_rules:
        if (rule.overrides or stain is Stain.UNKNOWN) and rule.matches(values):
            stain, source, conflict = rule.stain, "rule", ()
            break
    described = bool(declared) or bool(classes)
    if stain is Stain.UNKNOWN and not described and rules.default_stain is not None:
        stain, source = rules.default_stain, "default"
    if block is None and rules.block_pattern:
        for candidate in block_candidates:
            match = re.search(rules.block_pattern, candidate or "")
            if match and match.group("block"):
                block = match.group("block").strip()
                break
    return SeriesMetadata(
        key=key,
        modality=modality,
        stain=stain,
        stain_source=source if stain is not Stain.UNKNOWN else "none",
        stain_conflict=conflict,
        body_part=body_part or rules.default_body_part,
        block=block,
        series_description=fields.get("series_description"),
        stain_text=tuple(texts),
    )


def series_metadata_from_dataset(
    ds: Dataset, rules: MetadataRules | None = None, key: str | None = None
) -> SeriesMetadata:
    """Read routing metadata from an instance's header (pixels not needed).

    A slide's stain, body part and block are read as below; any other series (a CT or MR
    volume, a segmentation) carries its kind, modality, SOP class, body part and
    description, and no stain. A header without a SOP class is read as a slide.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        Any instance of the series (for a slide, the level-0 VOLUME is best).
    rules : MetadataRules, optional
        Site rules.
    key : str, optional
        The slide key; defaults to the Series Instance UID.
    """
    rules = rules or MetadataRules()
    sop_class = _text(ds.get("SOPClassUID"))
    kind = series_kind(sop_class) if sop_class else SeriesKind.SLIDE
    if kind is not SeriesKind.SLIDE:
        return SeriesMetadata(
            key or str(ds.get("SeriesInstanceUID", "")),
            _text(ds.get("Modality")),
            Stain.UNKNOWN,
            body_part=_header_body_part(ds),  # the site default is for slides only
            series_description=_text(ds.get("SeriesDescription")),
            kind=kind,
            sop_class_uid=sop_class,
        )
    texts = _header_stain_texts(ds)
    fields = {
        "series_description": _text(ds.get("SeriesDescription")),
        "study_description": _text(ds.get("StudyDescription")),
        "container_identifier": _text(ds.get("ContainerIdentifier")),
        "source": key,
    }
    specimen_ids = [_text(s.get("SpecimenIdentifier")) for s in _specimens(ds)]
    slide = _resolve(
        key or str(ds.get("SeriesInstanceUID", "")),
        _text(ds.get("Modality")),
        fields,
        (texts, (), "specimen-preparation"),
        _header_body_part(ds),
        _header_block(ds),
        [fields["container_identifier"], *specimen_ids, fields["series_description"], key],
        rules,
    )
    return dataclasses.replace(slide, sop_class_uid=sop_class)


_VENDOR_STAIN_KEYS = re.compile(r"stain|marker|antibod", re.IGNORECASE)
_VENDOR_TEXT_KEYS = re.compile(r"description|title|comment", re.IGNORECASE)


def series_metadata_from_properties(
    key: str, properties: Mapping[str, str], rules: MetadataRules | None = None
) -> SeriesMetadata:
    """Read routing metadata from a vendor slide (OpenSlide properties and its path).

    Parameters
    ----------
    key : str
        The slide's path (also matched by ``source`` rules).
    properties : mapping
        The vendor properties (``openslide.*``, ``aperio.*``, ``hamamatsu.*``...).
    rules : MetadataRules, optional
        Site rules.
    """
    rules = rules or MetadataRules()
    declared = [v for k, v in properties.items() if _VENDOR_STAIN_KEYS.search(k) and v]
    incidental = [
        v
        for k, v in properties.items()
        if v and _VENDOR_TEXT_KEYS.search(k) and not _VENDOR_STAIN_KEYS.search(k)
    ]
    texts = [*declared, *incidental]
    description = next((v for k, v in properties.items() if k.endswith(".Title") and v), None)
    fields = {
        "series_description": description,
        "study_description": None,
        "container_identifier": properties.get("aperio.Barcode") or None,
        "source": key,
    }
    body = "BREAST" if any(_BREAST.search(t) for t in texts) else None
    return _resolve(
        key,
        "SM",
        fields,
        (declared, incidental, "vendor-metadata"),
        body,
        None,
        [fields["container_identifier"], description, key],
        rules,
    )
