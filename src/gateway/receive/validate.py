"""Checking a received instance before it is acknowledged (pixel data is never loaded).

:func:`read_header` parses the header, checks it against the request and the SOP class,
refuses values the catalog could not hold (rather than truncating an identifier), and
walks the pixel data's structure (:mod:`.structure`) so that an incomplete image is
refused instead of acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ihgamp_core.analysis.contract import WSI_SOP_CLASS

from ..catalog.identity import IdentityKey, PatientIdentity
from ..spool import valid_uid
from .guard import DatasetMismatchError, UnreadableDatasetError
from .structure import check_pixel_data

__all__ = ["InstanceHeader", "read_header"]

DEFLATED = "1.2.840.10008.1.2.1.99"
_MAX_MATRIX = 10_000_000  # pixels per side; far beyond any scanner (5 m at 0.5 um/px)
#: Longest value kept in the catalog per attribute. AccessionNumber is SH (16) by the
#: standard; longer values from non-conformant senders are kept up to LO's 64.
_MAX_LENGTH = {"AccessionNumber": 64, "Modality": 16}


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
    patient: PatientIdentity | None = None


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


#: Row and column spacing of a VOLUME level may differ by this fraction (scanner rounding).
_SPACING_TOLERANCE = 0.01


def _square_spacing(ds: Any) -> None:
    """Refuse a VOLUME level whose pixels are not square (tiles would be distorted)."""
    try:
        rows, columns = (
            float(v) * 1000.0
            for v in ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        )
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return  # no spacing: the engine asks for one (or an override) before scoring
    if rows <= 0 or columns <= 0 or abs(rows - columns) > _SPACING_TOLERANCE * max(rows, columns):
        raise DatasetMismatchError(
            f"pixel spacing {rows:.3f} x {columns:.3f} um is not square: a VOLUME level "
            "needs equal row and column spacing"
        )


#: Attributes the gateway copies into its outputs or reads for routing and identity, and
#: the VR the standard gives them: a data set that encodes one otherwise is refused.
_COPIED_VRS = {
    "PatientName": "PN",
    "PatientID": "LO",
    "IssuerOfPatientID": "LO",
    "PatientBirthDate": "DA",
    "PatientSex": "CS",
    "StudyDate": "DA",
    "StudyTime": "TM",
    "AccessionNumber": "SH",
    "ReferringPhysicianName": "PN",
    "StudyID": "SH",
    "StudyDescription": "LO",
    "SeriesDescription": "LO",
    "Modality": "CS",
}


def _check_vrs(ds: Any) -> None:
    """Refuse copied attributes encoded with another VR than the standard's (UN aside)."""
    for keyword, vr in _COPIED_VRS.items():
        element = ds.data_element(keyword) if keyword in ds else None
        if element is not None and element.VR not in (vr, "UN"):
            raise DatasetMismatchError(
                f"{keyword} is encoded as {element.VR}; the standard says {vr}"
            )


def read_header(
    path: Path, sop_class_uid: str, sop_instance_uid: str, identity: IdentityKey | None = None
) -> InstanceHeader:
    """Parse and check the header of a received file.

    Parameters
    ----------
    path : Path
        The received file (DICOM file format, as written by the receiver).
    sop_class_uid, sop_instance_uid : str
        The Affected SOP Class/Instance UID of the C-STORE request.
    identity : IdentityKey, optional
        Makes the keyed digests of the patient identity (the header's values never leave
        this function).

    Raises
    ------
    UnreadableDatasetError
        The data set cannot be parsed, or identifying UIDs are missing, malformed or
        inconsistent with the request (status 0xC000).
    DatasetMismatchError
        The data set lacks what its SOP class requires, its pixel data is incomplete or
        inconsistent with its header, or it is deflated (status 0xA900).
    """
    with Path(path).open("rb") as fh:
        try:
            return _read_header(
                fh, Path(path).stat().st_size, sop_class_uid, sop_instance_uid, identity
            )
        except (DatasetMismatchError, UnreadableDatasetError):
            raise
        except Exception as exc:  # pydicom converts values lazily: errors surface late
            raise UnreadableDatasetError(
                f"cannot interpret the data set ({type(exc).__name__})"
            ) from None


def _read_header(
    fh: Any,
    file_size: int,
    sop_class_uid: str,
    sop_instance_uid: str,
    identity: IdentityKey | None,
) -> InstanceHeader:
    import pydicom

    try:
        ds = pydicom.dcmread(fh, stop_before_pixels=True)
        header = {
            key: _text(ds, key)
            for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
        }
        transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    except Exception as exc:  # pydicom raises many types; its messages may quote values
        raise UnreadableDatasetError(f"cannot parse the data set ({type(exc).__name__})") from None
    if transfer_syntax == DEFLATED:
        raise DatasetMismatchError(
            "Deflated Explicit VR Little Endian is not accepted; send another transfer syntax"
        )

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

    _check_vrs(ds)
    texts = {key: _text(ds, key) for key in ("Modality", "AccessionNumber")}
    for key, value in texts.items():
        if value is not None and len(value) > _MAX_LENGTH[key]:
            raise DatasetMismatchError(f"{key} is longer than {_MAX_LENGTH[key]} characters")

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
        if isinstance(image_type, str):
            image_type = [image_type]
        if len(image_type) < 3:
            raise DatasetMismatchError("ImageType (0008,0008) missing: not a VOLUME level")
        flavor = str(image_type[2]).upper()[:16]
        spacing = _pixel_spacing_um(ds)
        if flavor == "VOLUME":
            _square_spacing(ds)
    try:
        check_pixel_data(fh, ds, transfer_syntax, file_size, sop_class_uid == WSI_SOP_CLASS)
    except OSError as exc:
        raise UnreadableDatasetError(f"cannot read the stored data set ({exc.strerror})") from None

    return InstanceHeader(
        study_uid=str(header["StudyInstanceUID"]),
        series_uid=str(header["SeriesInstanceUID"]),
        sop_instance_uid=str(header["SOPInstanceUID"]),
        sop_class_uid=sop_class_uid,
        transfer_syntax_uid=transfer_syntax,
        modality=texts["Modality"],
        accession_number=texts["AccessionNumber"],
        image_flavor=flavor,
        pixel_spacing_um=spacing,
        patient=None
        if identity is None
        else identity.identity(str(header["StudyInstanceUID"]), ds),
    )
