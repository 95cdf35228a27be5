"""Copies of the sample studies under new UIDs: many distinct studies for load tests."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")


def relabel(source: Path, target: Path, accession: str | None = None) -> tuple[str, list[Path]]:
    """Copy every instance under ``source`` with fresh UIDs (consistent within the copy).

    Returns
    -------
    tuple
        The new Study Instance UID and the copied files.
    """
    mapping: dict[str, str] = {}
    target.mkdir(parents=True, exist_ok=True)
    files = []
    study = ""
    for path in sorted(source.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        for keyword in _UIDS:
            if keyword in ds:
                old = str(ds.data_element(keyword).value)  # type: ignore[union-attr]
                ds.data_element(keyword).value = mapping.setdefault(old, generate_uid())  # type: ignore[union-attr]
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if accession is not None:
            ds.AccessionNumber = accession
        study = str(ds.StudyInstanceUID)
        out = target / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(out, enforce_file_format=True)
        files.append(out)
    return study, files


def restudy(files: list[Path], out: Path, study: str, **changes: object) -> list[Path]:
    """One slide's files again in study ``study`` (a name: UIDs derive from it and ``out``).

    New Study, Series and SOP Instance UIDs; ``changes`` sets header attributes (a
    value of ``None`` deletes one).
    """
    from ihgamp_core.synthetic.slides import deterministic_uid

    out.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in files:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = deterministic_uid(study, "study")
        ds.SeriesInstanceUID = deterministic_uid(study, str(out), "series")
        ds.SOPInstanceUID = deterministic_uid(study, str(out), str(ds.SOPInstanceUID))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for keyword, value in changes.items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        target = out / path.name
        ds.save_as(target, enforce_file_format=True)
        copies.append(target)
    return copies


PATIENT = ("PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex")


def patient_of(path: Path) -> dict[str, object]:
    """The patient attributes of ``path`` (``restudy`` changes: another slide, same patient)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {keyword: ds.get(keyword) for keyword in PATIENT}
