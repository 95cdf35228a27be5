"""Writing synthetic slides: an SVS-like pyramidal TIFF, and its DICOM WSI conversion.

The TIFF is what an Aperio scanner writes (OpenSlide reads it as vendor ``aperio``):
tiled, JPEG-compressed levels with the Aperio ``ImageDescription`` carrying ``MPP``
and ``AppMag``. The DICOM copy is made by wsidicomizer, which passes the JPEG tiles
through unchanged, with synthetic (never real) patient, study and specimen data.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..uids import derived_uid
from .he import case_style, render_tissue, tissue_shape

__all__ = [
    "SyntheticIdentity",
    "SyntheticSlideSpec",
    "deterministic_uid",
    "dicomize",
    "render_slide",
    "write_svs",
]


def deterministic_uid(*parts: str) -> str:
    """Derive a DICOM UID (2.25 form) from ``parts``: the same inputs give the same UID."""
    return derived_uid("ihgamp-synthetic", *parts)


@dataclass(frozen=True)
class SyntheticSlideSpec:
    """How to generate one synthetic slide.

    Parameters
    ----------
    name : str
        File stem and seed namespace.
    seed : int
        Random seed.
    label : int
        Hidden label (1 = HRD-like morphology).
    width_um, height_um : float
        Physical size of the scanned area.
    base_mpp : float
        Level-0 pixel spacing (0.5 = 20x, 0.25 = 40x).
    downsamples : tuple of int
        Pyramid levels relative to level 0, starting with 1.
    tissue_coverage : float
        Approximate fraction of the image covered by tissue.
    tile_px : int
        Stored tile size.
    jpeg_quality : int
        JPEG quality of the stored tiles.
    """

    name: str
    seed: int
    label: int
    width_um: float = 2048.0
    height_um: float = 1536.0
    base_mpp: float = 0.5
    downsamples: tuple[int, ...] = (1, 4, 16)
    tissue_coverage: float = 0.45
    tile_px: int = 256
    jpeg_quality: int = 85

    @property
    def size_px(self) -> tuple[int, int]:
        """Level-0 ``(width, height)`` in pixels."""
        return round(self.width_um / self.base_mpp), round(self.height_um / self.base_mpp)


@dataclass(frozen=True)
class SyntheticIdentity:
    """Synthetic patient, study and specimen data written into the DICOM copy."""

    patient_name: str
    patient_id: str
    issuer_of_patient_id: str
    birth_date: dt.date
    sex: str
    accession_number: str
    study_id: str
    study_description: str
    study_date: dt.date
    container_identifier: str
    specimen_identifier: str
    barcode: str
    histology: str
    study_instance_uid: str
    series_instance_uid: str


def render_slide(spec: SyntheticSlideSpec) -> NDArray[np.uint8]:
    """Render level 0 of ``spec`` as an RGB array."""
    rng = np.random.default_rng(spec.seed)
    width, height = spec.size_px
    style = case_style(rng, float(spec.label))
    mask = tissue_shape(rng, height, width, spec.tissue_coverage, blob_px=300.0 / spec.base_mpp)
    return render_tissue(rng, height, width, spec.base_mpp, style, mask)


def _aperio_description(spec: SyntheticSlideSpec, width: int, height: int, level: int) -> str:
    base_w, base_h = spec.size_px
    mag = round(20.0 * 0.5 / spec.base_mpp)
    head = "Aperio Image Library v12.0.15 \r\n"
    if level == 0:
        head += f"{width}x{height} [0,0 {width}x{height}] ({spec.tile_px}x{spec.tile_px}) "
        head += f"JPEG/RGB Q={spec.jpeg_quality}"
    else:
        head += f"{base_w}x{base_h} -> {width}x{height} - "
    return (
        f"{head}|AppMag = {mag}|MPP = {spec.base_mpp:.4f}"
        f"|Filename = {spec.name}|ScanScope ID = SYNTHETIC|Date = 01/01/26"
    )


def write_svs(image: NDArray[np.uint8], path: Path, spec: SyntheticSlideSpec) -> Path:
    """Write ``image`` as an Aperio-style pyramidal TIFF.

    Each level is an area-averaged downsample of level 0, stored as ``tile_px`` JPEG
    tiles (YCbCr 4:2:0, as scanners write them); a stripped thumbnail follows level 0,
    where Aperio puts it.
    """
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    base = Image.fromarray(image)

    def downsampled(factor: float) -> NDArray[np.uint8]:
        size = (math.floor(image.shape[1] / factor), math.floor(image.shape[0] / factor))
        return np.ascontiguousarray(base.resize(size, Image.Resampling.BOX))

    jpeg = {"compression": "jpeg", "compressionargs": {"level": spec.jpeg_quality}}
    with tifffile.TiffWriter(path, bigtiff=False) as tif:
        # Aperio order: baseline, stripped thumbnail, further levels (all subfiletype 0).
        for level, factor in enumerate(spec.downsamples):
            data = image if factor == 1 else downsampled(factor)
            tif.write(
                np.ascontiguousarray(data),
                tile=(spec.tile_px, spec.tile_px),
                photometric="rgb",
                description=_aperio_description(spec, data.shape[1], data.shape[0], level),
                metadata=None,
                **jpeg,  # type: ignore[arg-type]
            )
            if level == 0:
                thumb = downsampled(max(1.0, max(image.shape[:2]) / 768.0))
                tif.write(
                    thumb,
                    photometric="rgb",
                    rowsperstrip=16,
                    description=_aperio_description(spec, thumb.shape[1], thumb.shape[0], 1),
                    metadata=None,
                    **jpeg,  # type: ignore[arg-type]
                )
    return path


def _uid_generator(*namespace: str) -> Callable[[], str]:
    counter = itertools.count()
    return lambda: deterministic_uid(*namespace, str(next(counter)))


def _sample_origin(block: str | None, body_part: str | None) -> dict[str, Any]:
    """``sampled_from`` (part -> block) and ``anatomical_sites`` of a slide sample."""
    from pydicom.sr.coding import Code
    from wsidicom.conceptcode import (
        AnatomicPathologySpecimenTypesCode,
        ContainerTypeCode,
        SpecimenSamplingProcedureCode,
    )
    from wsidicom.metadata import Sample, Specimen

    origin: dict[str, Any] = {}
    if block:
        part = Specimen(
            identifier=block.rsplit(" ", 1)[0] if " " in block else f"{block}-part",
            type=AnatomicPathologySpecimenTypesCode("Gross specimen"),
        )
        cassette = Sample(
            identifier=block,
            sampled_from=[part.sample(method=SpecimenSamplingProcedureCode("Dissection"))],
            type=AnatomicPathologySpecimenTypesCode("tissue specimen"),
            container=ContainerTypeCode("Tissue cassette"),
        )
        origin["sampled_from"] = cassette.sample(
            method=SpecimenSamplingProcedureCode("Block sectioning")
        )
    if body_part == "BREAST":
        origin["anatomical_sites"] = [Code("76752008", "SCT", "Breast")]
    return origin


def dicomize(
    svs_path: Path,
    out_dir: Path,
    identity: SyntheticIdentity,
    stain: str | None = None,
    block: str | None = None,
    body_part: str | None = None,
    series_description: str | None = None,
) -> list[Path]:
    """Convert a synthetic SVS to a DICOM WSI series carrying ``identity``.

    UIDs are derived from the identity, so the same input gives the same instances.

    Parameters
    ----------
    svs_path, out_dir : Path
        Input file and output folder.
    identity : SyntheticIdentity
        Synthetic patient, study and specimen data.
    stain : str or None
        Free-text staining substance (e.g. an IHC antibody); None writes the H&E codes.
    block : str or None
        Identifier of the tissue block the slide was cut from: the specimen description
        then records the chain part -> block -> slide sample.
    body_part : str or None
        Body Part Examined (``BREAST`` also codes the specimen's anatomic structure).
    series_description : str or None
        Series Description.
    """
    from pydicom import config as pydicom_config
    from pydicom.dataset import Dataset
    from pydicom.uid import UID

    # wsidicomizer turns pydicom's strict mode on for the whole process when imported
    # (``config.enforce_valid_values = True``): it stays on for the conversion only.
    strict = pydicom_config.enforce_valid_values
    from wsidicom.conceptcode import SpecimenStainsCode
    from wsidicom.metadata import (
        Equipment,
        Label,
        Patient,
        PatientSex,
        Series,
        Slide,
        SlideSample,
        Staining,
        Study,
    )
    from wsidicomizer import WsiDicomizer
    from wsidicomizer.metadata import WsiDicomizerMetadata

    metadata = WsiDicomizerMetadata(
        study=Study(
            uid=UID(identity.study_instance_uid),
            identifier=identity.study_id,
            date=identity.study_date,
            time=dt.time(9, 30),
            accession_number=identity.accession_number,
            description=identity.study_description,
        ),
        series=Series(
            uid=UID(identity.series_instance_uid), number=1, description=series_description
        ),
        patient=Patient(
            name=identity.patient_name,
            identifier=identity.patient_id,
            birth_date=identity.birth_date,
            sex=PatientSex[identity.sex],
        ),
        equipment=Equipment(
            manufacturer="IHGAMP synthetic slide generator",
            model_name="synthetic-he",
            device_serial_number="SYN-0001",
            software_versions=["1"],
        ),
        slide=Slide(
            identifier=identity.container_identifier,
            stainings=[
                Staining(substances=stain)
                if stain
                else Staining(
                    substances=[
                        SpecimenStainsCode("hematoxylin stain"),
                        SpecimenStainsCode("water soluble eosin stain"),
                    ]
                )
            ],
            samples=[
                SlideSample(
                    identifier=identity.specimen_identifier,
                    uid=UID(deterministic_uid(identity.specimen_identifier, "specimen")),
                    short_description=identity.histology[:64],
                    **_sample_origin(block, body_part),
                )
            ],
        ),
        label=Label(text=identity.container_identifier, barcode=identity.barcode),
    )
    extra = Dataset()
    extra.IssuerOfPatientID = identity.issuer_of_patient_id
    if body_part:
        extra.BodyPartExamined = body_part
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.dcm"):
        old.unlink()
    pydicom_config.enforce_valid_values = True
    try:
        files = WsiDicomizer.convert(
            svs_path,
            out_dir,
            metadata=metadata,
            uid_generator=_uid_generator(identity.series_instance_uid),
            include_label=False,
            include_overview=False,
            include_thumbnail=False,
            metadata_post_processor=extra,
            workers=1,
        )
    finally:
        pydicom_config.enforce_valid_values = strict
    return [Path(f) for f in sorted(files)]
