"""What the report builders need from the source DICOM headers, and stable output UIDs.

The engine's :class:`~ihgamp_core.hrd.result.CaseResult` carries no patient data. Reports
do: they copy the patient and study modules from the slides (DICOM SR), or name the
patient by identifier (FHIR). :class:`ReportContext` gathers those headers (read without
pixel data) per slide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from ..errors import MixedPatientsError
from ..uids import derived_uid

__all__ = [
    "OutputIds",
    "ReportContext",
    "SlideHeaders",
    "Supersedes",
    "derive_output_ids",
]


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


@dataclass(frozen=True)
class Supersedes:
    """The earlier result of the same study that a new result replaces.

    A study scored on partial input (a series arrived late) is scored again when the
    rest arrives; the new SR names the old one as its predecessor and the FHIR
    Observation is updated in place (status ``amended``), so the partial result does
    not stand as final next to the better one.

    Parameters
    ----------
    observation_identifier : str
        The Observation identifier the chain of results is known by downstream (the
        first result's): the new Observation is written over it.
    sr_study_uid, sr_series_uid, sr_sop_uid, sr_sop_class_uid : str
        The earlier SR.
    created : str
        When the earlier result was computed (ISO 8601).
    slides : int
        How many slides it used.
    """

    observation_identifier: str
    sr_study_uid: str
    sr_series_uid: str
    sr_sop_uid: str
    sr_sop_class_uid: str
    created: str
    slides: int

    def note(self) -> str:
        """The sentence every output of the new result carries."""
        plural = "" if self.slides == 1 else "s"
        return (
            f"This result replaces an earlier one ({self.created}, from {self.slides} "
            f"slide{plural}) computed before the study was complete."
        )


@dataclass(frozen=True)
class SlideHeaders:
    """Headers of one slide's instances.

    Parameters
    ----------
    series_uid : str
        Series Instance UID of the slide.
    datasets : tuple of Dataset
        Every instance header (no pixel data).
    """

    series_uid: str
    datasets: tuple[Dataset, ...]

    @property
    def volumes(self) -> list[Dataset]:
        """VOLUME instances, largest first."""
        vols = [
            d
            for d in self.datasets
            if len(d.get("ImageType", [])) > 2 and str(d.ImageType[2]).upper() == "VOLUME"
        ]
        return sorted(vols, key=lambda d: -int(d.get("TotalPixelMatrixColumns", 0)))

    @property
    def base(self) -> Dataset:
        """The level-0 VOLUME instance (the spatial reference of heatmaps)."""
        vols = self.volumes
        return vols[0] if vols else self.datasets[0]

    @property
    def spatial_note(self) -> str | None:
        """Why the slide's spatial objects do not share its frame of reference, if so."""
        if _text(self.base, "FrameOfReferenceUID"):
            return None
        return (
            "the slide has no Frame of Reference UID (0020,0052): its heatmap carries a frame "
            "of reference of its own and does not register to the slide in viewers"
        )

    @property
    def no_spatial_objects(self) -> str | None:
        """Why no DICOM heatmap object can be built on this slide, if so.

        A heatmap object copies the slide's specimen description; a header without one
        (some converters write none) would make it invalid, and the gateway invents no
        specimen.
        """
        if self.base.get("SpecimenDescriptionSequence"):
            return None
        return (
            "the slide's header has no Specimen Description Sequence (0040,0560): no heatmap "
            "is issued for it (the object would copy it; the gateway invents no specimen)"
        )

    @property
    def spatial_base(self) -> Dataset:
        """:attr:`base` with a Frame of Reference: the slide's, else one of the heatmap's own.

        Slides from some converters (Orthanc's ``OrthancWSIDicomizer``) carry none; the
        spatial objects built on them then get a Frame of Reference UID derived from the
        slide's Series Instance UID (stable across re-runs), and :attr:`spatial_note`
        says so.
        """
        base = self.base
        if self.spatial_note is None:
            return base
        copy = Dataset(base)
        if hasattr(base, "file_meta"):
            copy.file_meta = base.file_meta
        copy.FrameOfReferenceUID = derived_uid("ihgamp-frame-of-reference", self.series_uid)
        copy.PositionReferenceIndicator = ""
        return copy

    def _specimen(self, keyword: str) -> str | None:
        seq = self.base.get("SpecimenDescriptionSequence") or []
        for item in seq:
            value = _text(item, keyword)
            if value:
                return value
        return None

    @property
    def specimen_uid(self) -> str | None:
        """Specimen UID of the first specimen on the slide."""
        return self._specimen("SpecimenUID")

    @property
    def specimen_identifier(self) -> str | None:
        """Specimen Identifier of the first specimen."""
        return self._specimen("SpecimenIdentifier")

    @property
    def container_identifier(self) -> str | None:
        """The glass slide's Container Identifier."""
        return _text(self.base, "ContainerIdentifier")

    @property
    def histology(self) -> str | None:
        """Specimen short or detailed description (free-text histology), if any."""
        return self._specimen("SpecimenShortDescription") or self._specimen(
            "SpecimenDetailedDescription"
        )


#: Patient and General Study attributes of Type 2: every object built on a header has them
#: (empty where the source lacked them: third-party converters write few of them).
_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
#: Short String (SH) attributes copied into the outputs, which senders overfill.
_SHORT_STRINGS = {"AccessionNumber": 16, "StudyID": 16}


def _conform(ds: Dataset) -> list[str]:
    """Make a source header fit the objects built on it (in place); say what changed."""
    notes = []
    for keyword, limit in _SHORT_STRINGS.items():
        value = _text(ds, keyword)
        if value is not None and len(value) > limit:
            setattr(ds, keyword, "")
            notes.append(
                f"{keyword} longer than {limit} characters: left empty in the DICOM outputs"
                + (
                    " (kept in full in the FHIR ImagingStudy)"
                    if keyword == "AccessionNumber"
                    else ""
                )
            )
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "")
    if "ContainerIdentifier" in ds:  # the Specimen macro's Type 2 sequences (copied by the PM)
        for keyword in ("IssuerOfTheContainerIdentifierSequence", "ContainerTypeCodeSequence"):
            if keyword not in ds:
                setattr(ds, keyword, [])
    return notes


@dataclass(frozen=True)
class ReportContext:
    """The source headers of a case, slide by slide.

    Parameters
    ----------
    slides : tuple of SlideHeaders
        One entry per slide, in the order of the result's slides.
    histology_override : str or None
        Histology from the order or the configuration (wins over the headers).
    received_accession : str or None
        The Accession Number as received, when the headers had to drop it (longer than
        DICOM's 16 characters): FHIR keeps it.
    header_notes : tuple of str
        What :meth:`from_files` changed to make the headers fit the outputs.
    """

    slides: tuple[SlideHeaders, ...]
    histology_override: str | None = None
    received_accession: str | None = None
    header_notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Refuse headers of more than one patient: data of two patients never meet.

        Patient ID with its issuer must be the same on every instance; birth date and
        sex where instances have them.

        Raises
        ------
        MixedPatientsError
            Naming the attribute that differs (never its values).
        """
        datasets = [d for slide in self.slides for d in slide.datasets]
        ids = {(_text(d, "PatientID"), _text(d, "IssuerOfPatientID")) for d in datasets}
        if len(ids) > 1:
            raise MixedPatientsError(
                "the inputs belong to more than one patient (Patient ID differs between "
                "instances); no result is issued: review the study"
            )
        for keyword in ("PatientBirthDate", "PatientSex"):
            if len({v for d in datasets if (v := _text(d, keyword))}) > 1:
                raise MixedPatientsError(
                    f"the inputs belong to more than one patient ({keyword} differs between "
                    "instances); no result is issued: review the study"
                )

    @classmethod
    def from_files(
        cls, files_by_series: Mapping[str, Sequence[str | Path]], histology: str | None = None
    ) -> ReportContext:
        """Read the headers of the given instance files (grouped by series).

        The headers are made to fit the outputs, whatever the sender wrote: missing
        Type 2 patient and study attributes are added empty, and Short Strings longer
        than DICOM allows (an Accession Number of 17-64 characters) are left empty, the
        Accession Number being kept for FHIR (:attr:`received_accession`).
        """
        slides = []
        received = None
        notes: list[str] = []
        for series_uid, files in files_by_series.items():
            datasets = tuple(pydicom.dcmread(f, stop_before_pixels=True) for f in files)
            for ds in datasets:
                received = received or _text(ds, "AccessionNumber")
                notes.extend(n for n in _conform(ds) if n not in notes)
            slides.append(SlideHeaders(series_uid, datasets))
        kept = received if any(n.startswith("AccessionNumber") for n in notes) else None
        return cls(tuple(slides), histology, kept, tuple(notes))

    def slide(self, series_uid: str | None) -> SlideHeaders | None:
        """The headers of one slide."""
        return next((s for s in self.slides if s.series_uid == series_uid), None)

    @property
    def first(self) -> Dataset:
        """A header to take patient and study attributes from."""
        return self.slides[0].base

    @property
    def histology(self) -> str | None:
        """Override, else the first specimen description, else the study description."""
        if self.histology_override:
            return self.histology_override
        for slide in self.slides:
            if slide.histology:
                return slide.histology
        return _text(self.first, "StudyDescription")

    @property
    def patient_id(self) -> str | None:
        """Patient ID of the study."""
        return _text(self.first, "PatientID")

    @property
    def issuer_of_patient_id(self) -> str | None:
        """Issuer of Patient ID, if recorded."""
        return _text(self.first, "IssuerOfPatientID")

    @property
    def accession_number(self) -> str | None:
        """Accession Number of the study (as received, even when too long for DICOM)."""
        return self.received_accession or _text(self.first, "AccessionNumber")

    @property
    def study_uid(self) -> str:
        """Study Instance UID."""
        return str(self.first.StudyInstanceUID)


@dataclass(frozen=True)
class OutputIds:
    """Stable identifiers of everything produced for one result.

    Derived from the study, the model and the exact input instances, so that
    re-sending (or re-scoring the same input with the same model) reuses them and a
    receiving PACS or EHR sees the same objects, never duplicates.
    """

    key: str
    sr_series_uid: str
    sr_sop_uid: str
    pm_series_uid: str
    pm_sop_uids: tuple[str, ...]
    device_uid: str
    observation_identifier: str
    device_identifier: str

    def to_dict(self) -> dict[str, str]:
        """The ``outputs`` block of a result document (what was issued, for people)."""
        return {
            "key": self.key,
            "sr_sop_instance_uid": self.sr_sop_uid,
            "sr_series_instance_uid": self.sr_series_uid,
            "heatmap_series_instance_uid": self.pm_series_uid,
            "observation_identifier": self.observation_identifier,
        }


def derive_output_ids(
    study: str, model: str, parameters: str, inputs: Sequence[str], n_maps: int
) -> OutputIds:
    """Stable identifiers from the study, the model, its parameters and the input instances.

    Parameters
    ----------
    study : str
        Study Instance UID (or the case id when there is none).
    model : str
        The model key (which model, which weights).
    parameters : str
        Everything else that changes the result (tiling, analysis name...).
    inputs : sequence of str
        SOP Instance UIDs of the inputs (sorted here).
    n_maps : int
        Heatmap objects to name (one per slide with a map).
    """
    key = hashlib.sha256("\n".join([study, model, parameters, *sorted(inputs)]).encode())
    digest = key.hexdigest()

    def uid(*parts: str) -> str:
        return derived_uid("ihgamp-output", digest, *parts)

    device_digest = hashlib.sha256(model.encode()).hexdigest()[:32]
    return OutputIds(
        key=digest,
        sr_series_uid=uid("sr-series"),
        sr_sop_uid=uid("sr"),
        pm_series_uid=uid("pm-series"),
        pm_sop_uids=tuple(uid("pm", str(i)) for i in range(n_maps)),
        device_uid=derived_uid("ihgamp-device", device_digest),
        observation_identifier=digest[:40],
        device_identifier=device_digest,
    )
