"""Reading and checking the header of a received instance (pixel data is never loaded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..spool import valid_uid
from .guard import DatasetMismatchError, UnreadableDatasetError

__all__ = ["InstanceHeader", "read_header"]

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
_MAX_MATRIX = 10_000_000  # pixels per side; far beyond any scanner (5 m at 0.5 um/px)


@dataclass(frozen=True)
class InstanceHeader:
    """The attributes the gateway needs from a received instance."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str | None
    accession_number: str | None
    image_flavor: str | None
    pixel_spacing_um: float | None


def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _pixel_spacing_um(ds: Any) -> float | None:
    try:
        shared = ds.SharedFunctionalGroupsSequence[0]
        spacing = shared.PixelMeasuresSequence[0].PixelSpacing
        return float(spacing[0] + spacing[1]) / 2.0 * 1000.0
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None


def read_header(path: Path, sop_class_uid: str, sop_instance_uid: str) -> InstanceHeader:
    """Parse and check the header of a received file.

    Parameters
    ----------
    path : Path
        The received file (DICOM file format, as written by the receiver).
    sop_class_uid, sop_instance_uid : str
        The Affected SOP Class/Instance UID of the C-STORE request.

    Raises
    ------
    UnreadableDatasetError
        The data set cannot be parsed, or identifying UIDs are missing, malformed or
        inconsistent with the request (status 0xC000).
    DatasetMismatchError
        The data set lacks what its SOP class requires (status 0xA900).
    """
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        header = {
            key: _text(ds, key)
            for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
        }
        transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    except Exception as exc:  # pydicom raises many types; its messages may quote values
        raise UnreadableDatasetError(f"cannot parse the data set ({type(exc).__name__})") from None

    found_class = header["SOPClassUID"]
    if found_class is None or not valid_uid(found_class):
        raise UnreadableDatasetError("SOP Class UID is missing or not a valid UID")
    if found_class != sop_class_uid:
        raise DatasetMismatchError(
            f"SOP Class UID in the data set ({header['SOPClassUID']}) differs from the request"
        )
    if header["SOPInstanceUID"] != sop_instance_uid:
        raise UnreadableDatasetError("SOP Instance UID in the data set differs from the request")
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = header[key]
        if value is None:
            raise UnreadableDatasetError(f"{key} is missing")
        if not valid_uid(value):
            raise UnreadableDatasetError(f"{key} is not a valid UID")

    flavor = None
    spacing = None
    if sop_class_uid == WSI_SOP_CLASS:
        try:
            columns = int(ds.TotalPixelMatrixColumns)
            rows = int(ds.TotalPixelMatrixRows)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        except (AttributeError, TypeError, ValueError):
            raise DatasetMismatchError(
                "not a whole-slide image: Total Pixel Matrix Columns/Rows missing"
            ) from None
        if not (0 < columns <= _MAX_MATRIX and 0 < rows <= _MAX_MATRIX and frames > 0):
            raise DatasetMismatchError(
                f"implausible image size {columns} x {rows}, {frames} frames"
            )
        image_type = ds.get("ImageType") or []
        flavor = str(image_type[2]).upper() if len(image_type) > 2 else None
        spacing = _pixel_spacing_um(ds)

    return InstanceHeader(
        study_uid=str(header["StudyInstanceUID"]),
        series_uid=str(header["SeriesInstanceUID"]),
        sop_instance_uid=str(header["SOPInstanceUID"]),
        sop_class_uid=sop_class_uid,
        transfer_syntax_uid=transfer_syntax,
        modality=_text(ds, "Modality"),
        accession_number=_text(ds, "AccessionNumber"),
        image_flavor=flavor,
        pixel_spacing_um=spacing,
    )
