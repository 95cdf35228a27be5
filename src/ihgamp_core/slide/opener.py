"""Finding slides in paths and opening them with the right reader.

A path given by a user can be:

* a vendor slide file (SVS, NDPI, MRXS, TIFF, ...): one slide;
* a DICOM file: the slide is its whole series, so instances of the same series in the
  same folder are taken along;
* a folder: every DICOM WSI series in it (recursively) is one slide, every vendor
  file is one slide; other files are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydicom.uid import VLWholeSlideMicroscopyImageStorage

from ..errors import SlideOpenError
from .base import Slide
from .dicom import DicomSlide
from .vendor import VendorSlide, is_vendor_slide

__all__ = ["VL_WSI_SOP_CLASS", "SlideSource", "discover_slides", "open_slide"]

logger = logging.getLogger(__name__)

#: VL Whole Slide Microscopy Image Storage.
VL_WSI_SOP_CLASS = str(VLWholeSlideMicroscopyImageStorage)

_VENDOR_SUFFIXES = {
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".mrxs",
    ".scn",
    ".bif",
    ".svslide",
}


@dataclass(frozen=True)
class SlideSource:
    """A slide found on disk, not yet opened.

    Parameters
    ----------
    kind : {"dicom", "vendor"}
        Which reader opens it.
    paths : tuple of Path
        The vendor file, or the DICOM series' instance files.
    label : str
        How the slide is named in messages and results.
    """

    kind: Literal["dicom", "vendor"]
    paths: tuple[Path, ...]
    label: str

    def open(self, mpp_override: float | None = None) -> Slide:
        """Open the slide with its reader.

        Raises
        ------
        SlideOpenError
            If the data cannot be read as a slide.
        PixelSpacingError
            If no pixel spacing is stored and none is given.
        """
        if self.kind == "dicom":
            return DicomSlide(self.paths, mpp_override=mpp_override, source=self.label)
        return VendorSlide(self.paths[0], mpp_override=mpp_override)


@dataclass(frozen=True)
class _DicomHeader:
    path: Path
    sop_class: str
    series_uid: str


def _is_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path: Path) -> _DicomHeader:
    import pydicom

    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SeriesInstanceUID"]
        )
        return _DicomHeader(path, str(ds.SOPClassUID), str(ds.SeriesInstanceUID))
    except Exception as exc:  # pydicom raises several types for corrupt headers
        raise SlideOpenError(f"{path}: unreadable DICOM header ({exc})") from exc


def _sop_class_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name and name != uid else f"SOP class {uid}"


def _group_dicom(headers: Iterable[_DicomHeader]) -> list[SlideSource]:
    series: dict[str, list[Path]] = {}
    for header in headers:
        if header.sop_class == VL_WSI_SOP_CLASS:
            series.setdefault(header.series_uid, []).append(header.path)
    sources = []
    for files in series.values():
        files.sort()
        sources.append(SlideSource("dicom", tuple(files), str(files[0].parent)))
    return sources


def _walk(folder: Path) -> list[SlideSource]:
    dicom_headers: list[_DicomHeader] = []
    vendor: list[SlideSource] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if _is_dicom(path):
            try:
                dicom_headers.append(_read_header(path))
            except SlideOpenError as exc:
                logger.warning("skipping unreadable DICOM file", extra={"reason": str(exc)})
        elif path.suffix.lower() in _VENDOR_SUFFIXES and is_vendor_slide(path):
            vendor.append(SlideSource("vendor", (path,), str(path)))
    return _group_dicom(dicom_headers) + vendor


def discover_slides(paths: Sequence[Path]) -> list[SlideSource]:
    """Find the slides in ``paths`` (see the module docstring).

    Parameters
    ----------
    paths : sequence of Path
        Files and folders given by the user.

    Returns
    -------
    list of SlideSource
        One entry per slide, in the order found; never empty.

    Raises
    ------
    SlideOpenError
        If a path does not exist, is not a slide, or nothing usable is found.
    """
    if not paths:
        raise SlideOpenError("no slide paths given")
    found: list[SlideSource] = []
    seen_series: set[tuple[Path, ...]] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SlideOpenError(f"{path}: no such file or folder")
        if path.is_dir():
            sources = _walk(path)
            if not sources:
                raise SlideOpenError(
                    f"{path}: no slides found (looked for DICOM VL Whole Slide Microscopy "
                    "instances and SVS/NDPI/MRXS/TIFF files)"
                )
        elif _is_dicom(path):
            header = _read_header(path)
            if header.sop_class != VL_WSI_SOP_CLASS:
                raise SlideOpenError(
                    f"{path}: a DICOM {_sop_class_name(header.sop_class)} object, "
                    "not a VL Whole Slide Microscopy image"
                )
            siblings = [header]
            for other in sorted(path.parent.iterdir()):
                if other != path and other.is_file() and _is_dicom(other):
                    try:
                        sibling = _read_header(other)
                    except SlideOpenError:
                        continue
                    if sibling.series_uid == header.series_uid:
                        siblings.append(sibling)
            sources = _group_dicom(siblings)
        elif is_vendor_slide(path):
            sources = [SlideSource("vendor", (path,), str(path))]
        else:
            raise SlideOpenError(
                f"{path}: not a slide (neither DICOM nor a format OpenSlide reads); "
                "give a DICOM WSI folder or an SVS/NDPI/MRXS/TIFF file"
            )
        for source in sources:
            if source.paths not in seen_series:
                seen_series.add(source.paths)
                found.append(source)
    return found


def open_slide(path: Path, mpp_override: float | None = None) -> Slide:
    """Open the single slide at ``path``.

    Raises
    ------
    SlideOpenError
        If ``path`` holds no slide or more than one.
    """
    sources = discover_slides([path])
    if len(sources) != 1:
        raise SlideOpenError(f"{path}: holds {len(sources)} slides; give one slide")
    return sources[0].open(mpp_override)
