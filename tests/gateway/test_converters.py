"""Slides from a third-party converter: Orthanc's ``OrthancWSIDicomizer`` (Debian orthanc-wsi).

Its output has no Frame of Reference; by default no ImageType and a pixel spacing taken
from the imaged-size options (15 x 15 mm whatever the image: not square). What can never
be scored is refused before the acknowledgement with a status that names the attribute;
what can is scored once, and its heatmap gets a Frame of Reference of its own with a
note, instead of the job failing after scoring (and being retried).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from gateway.catalog import JobStore, StudyState
from gateway.catalog.dimse_audit import DimseAudit
from gateway.catalog.fhir_resources import FhirResourceStore, ServedType
from gateway.service import Gateway
from ihgamp_core.hrd.engine import Engine
from support.gateway import make_settings, send, storescu, wait_for
from support.reports import dciodvfy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DICOMIZER = "OrthancWSIDicomizer"
LONG_ACCESSION = "ACC-2026-PATHOLOGY-0000000000000042"  # 35 characters; DICOM's SH holds 16
DATASET = {
    "PatientID": "OWSI-0001",
    "PatientName": "CONVERTED^SLIDE",
    "PatientSex": "F",
    "AccessionNumber": "ACC-OWSI",
    "ImageType": "DERIVED\\PRIMARY\\VOLUME\\NONE",
    "FocusMethod": "AUTO",
    "ExtendedDepthOfField": "NO",
    "ContainerIdentifier": "CI-OWSI",
    "SpecimenDescriptionSequence": [
        {
            "SpecimenIdentifier": "S-OWSI-1",
            "SpecimenUID": "1.2.826.0.1.3680043.8.498.4242",
            "IssuerOfTheSpecimenIdentifierSequence": [],
            "SpecimenPreparationSequence": [],
        }
    ],
}


def _dicomize(svs: Path, out: Path, *options: str) -> list[Path]:
    out.mkdir(parents=True)
    proc = subprocess.run(
        [DICOMIZER, "--folder", str(out), *options, str(svs)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return sorted(out.glob("*.dcm"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, cmu_svs: Path) -> dict[str, list[Path]]:
    if shutil.which(DICOMIZER) is None:
        pytest.fail("OrthancWSIDicomizer missing: run `scripts/bootstrap.sh test` (orthanc-wsi)")
    root = tmp_path_factory.mktemp("dicomizer")
    dataset = root / "dataset.json"
    dataset.write_text(json.dumps(DATASET))
    bare = root / "no-specimen.json"
    bare.write_text(json.dumps({k: v for k, v in DATASET.items() if "Specimen" not in k}))
    long_accession = root / "long-accession.json"
    long_accession.write_text(json.dumps({**DATASET, "AccessionNumber": LONG_ACCESSION}))
    width, height = _size(cmu_svs)
    # The converter divides the imaged width by the rows and the height by the columns:
    # these sizes give square 0.5 um pixels.
    square = [
        "--imaged-width",
        f"{height * 0.0005:.4f}",
        "--imaged-height",
        f"{width * 0.0005:.4f}",
    ]
    split = ["--pyramid", "1", "--levels", "3", "--max-size", "1"]  # level 0 in several files
    return {
        "defaults": _dicomize(cmu_svs, root / "defaults"),
        "anisotropic": _dicomize(cmu_svs, root / "anisotropic", "--dataset", str(dataset)),
        "jpeg": _dicomize(
            cmu_svs, root / "jpeg", "--dataset", str(dataset), *square, *split,
            "--compression", "jpeg",
        ),
        "jpeg2000": _dicomize(
            cmu_svs, root / "jpeg2000", "--dataset", str(dataset), *square, *split,
            "--compression", "jpeg2000",
        ),
        "no-specimen": _dicomize(cmu_svs, root / "no-specimen", "--dataset", str(bare), *square),
        "long-accession": _dicomize(
            cmu_svs, root / "long-accession", "--dataset", str(long_accession), *square,
        ),
    }  # fmt: skip


def _size(svs: Path) -> tuple[int, int]:
    import openslide

    with openslide.OpenSlide(str(svs)) as slide:
        return slide.dimensions


@pytest.fixture()
def gateway(tmp_path: Path, engine: Engine) -> Iterator[Gateway]:
    settings = make_settings(tmp_path, http={"enabled": False})
    running = Gateway(settings, engine=engine)
    running.start()
    yield running
    running.stop()


def _refusals(gateway: Gateway) -> list[str]:
    return [str(r["reason"]) for r in DimseAudit(gateway.catalog).store_refusals(1000)]


def test_what_can_never_be_scored_is_refused_before_the_acknowledgement(
    gateway: Gateway, converted: dict[str, list[Path]]
) -> None:
    port = gateway.listener.port if gateway.listener else 0
    for variant, reason in (
        ("defaults", "ImageType (0008,0008) missing: not a VOLUME level"),
        ("anisotropic", "um is not square"),
    ):
        files = converted[variant]
        proc = storescu(port, files)  # DCMTK, as a scanner or PACS would send
        assert proc.returncode != 0 or "0xa900" in proc.stderr.lower(), proc.stderr
        found = [r for r in _refusals(gateway) if reason in r]
        assert len(found) == len(files), (variant, _refusals(gateway))
        uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        assert gateway.catalog.study(uid) is None  # nothing acknowledged, nothing stored
    spacing = re.compile(r"pixel spacing \d+\.\d{3} x \d+\.\d{3} um is not square")
    assert any(spacing.search(r) for r in _refusals(gateway))  # names the values


@pytest.mark.parametrize("variant", ["jpeg", "jpeg2000", "long-accession", "no-specimen"])
def test_a_converted_slide_without_frame_of_reference_is_scored_once(
    gateway: Gateway, converted: dict[str, list[Path]], tmp_path: Path, variant: str
) -> None:
    files = converted[variant]
    if variant in ("jpeg", "jpeg2000"):
        assert len(files) > 3  # a three-level pyramid with level 0 split over instances
    port = gateway.listener.port if gateway.listener else 0
    # pynetdicom: DCMTK's storescu cannot offer JPEG 2000 lossless without transcoding.
    assert send(port, files) == [0] * len(files)
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    done = (StudyState.SCORED, StudyState.FAILED)
    wait_for(lambda: (s := gateway.catalog.study(uid)) is not None and s.state in done, 300)
    (job,) = JobStore(gateway.catalog).jobs(study_uid=uid)
    assert (job.state, job.attempts) == ("done", 1), job.last_error  # scored once
    folder = tmp_path / "outbox" / uid / "hrd"
    result = json.loads((folder / "result.json").read_text())
    sr = pydicom.dcmread(folder / "sr.dcm")
    objects = ["sr.dcm"]
    if variant == "no-specimen":  # a heatmap object would copy a specimen nobody described
        assert not (folder / "heatmap-1.dcm").exists()
        assert any("no Specimen Description Sequence" in note for note in result["notes"])
    else:
        assert any("no Frame of Reference UID" in note for note in result["notes"])
        pm = pydicom.dcmread(folder / "heatmap-1.dcm", stop_before_pixels=True)
        assert pm.FrameOfReferenceUID.startswith("2.25.")
        assert pm.SeriesInstanceUID != sr.SeriesInstanceUID
        objects.append("heatmap-1.dcm")
    for name in objects:  # valid DICOM whatever the input carried
        errors, text = dciodvfy(folder / name)
        assert errors == [], text
    if variant == "long-accession":
        assert sr.AccessionNumber == ""
        assert any("AccessionNumber longer than 16" in note for note in result["notes"])
        study = FhirResourceStore(gateway.catalog).get(ServedType.IMAGING_STUDY, uid)
        assert study is not None
        assert LONG_ACCESSION in [i["value"] for i in study["identifier"]]
    else:
        assert sr.AccessionNumber == "ACC-OWSI"
