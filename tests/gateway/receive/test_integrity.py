"""What gets acknowledged is whole, is never overwritten, and never lands in the wrong study.

Concurrent re-sends of one SOP Instance UID, a UID reused in another study, images whose
pixel data is missing, truncated or inconsistent with their header, a real full disk
(a small tmpfs), and the spool state a crash leaves behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from gateway.catalog.dimse_audit import DimseAudit
from gateway.catalog.schema import Instance
from gateway.receive.store import InstanceStore
from gateway.spool import Spool
from support.gateway import dataset_bytes, send, tiny_wsi
from support.listener import Listener

pytestmark = pytest.mark.integration

Start = Callable[..., Listener]


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _rows(running: Listener) -> list[Instance]:
    with running.catalog.session() as s:
        return list(s.scalars(select(Instance)))


def test_concurrent_resends_of_one_uid_never_corrupt_an_acknowledged_file(
    listeners: Start, tmp_path: Path
) -> None:
    running = listeners(dicom={"max_associations": 32, "max_associations_per_ae": 32})
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    for round_ in range(3):
        variants = [
            tiny_wsi(tmp_path / f"r{round_}v{i}", study, series, sop, ContentDate=f"2026010{i + 1}")
            for i in range(8)
        ]
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda f: send(running.port, [f])[0], variants))
        assert all(status == 0 for status in statuses), statuses
        rows = _rows(running)
        for row in rows:  # every recorded file is what the catalog says it is
            assert _sha(Path(row.path)) == row.sha256
        stored = {dataset_bytes(Path(row.path)) for row in rows}
        for variant in variants:  # and every acknowledged transfer is kept
            assert dataset_bytes(variant) in stored
        assert sum(row.current for row in rows) == 1
    assert not list(running.spool.incoming.iterdir())


def test_a_uid_reused_in_another_study_is_refused_and_nothing_moves(
    listeners: Start, tmp_path: Path
) -> None:
    running = listeners()
    study_a, study_b, sop = generate_uid(), generate_uid(), generate_uid()
    first = tiny_wsi(tmp_path / "a", study_a, sop_uid=sop)
    again = tiny_wsi(tmp_path / "b", study_b, sop_uid=sop)
    assert send(running.port, [first]) == [0]
    assert send(running.port, [again]) == [0x0111]  # Duplicate SOP Instance
    (row,) = _rows(running)
    assert dataset_bytes(Path(row.path)) == dataset_bytes(first)
    a = running.catalog.study(study_a)
    assert a is not None and a.series[0].instance_count == 1
    assert running.catalog.study(study_b) is None
    (refusal,) = DimseAudit(running.catalog).store_refusals()
    assert refusal["status"] == 0x0111 and "another study" in refusal["reason"]


def _pixel_offset(path: Path) -> int:
    return Path(path).read_bytes().index(b"\xe0\x7f\x10\x00")


def _native_variants(folder: Path, study: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    good = tiny_wsi(folder / "good", study)
    data = good.read_bytes()
    out["truncated pixel data"] = folder / "truncated.dcm"
    out["truncated pixel data"].write_bytes(data[:-100])
    at = _pixel_offset(good)
    out["4 GiB declared, 10 bytes sent"] = folder / "declared.dcm"
    out["4 GiB declared, 10 bytes sent"].write_bytes(
        data[: at + 8] + struct.pack("<L", 0xFFFFFFF0) + b"\0" * 10
    )
    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out["no pixel data"] = folder / "nopixels.dcm"
    ds.save_as(out["no pixel data"], enforce_file_format=True)
    ds = pydicom.dcmread(good)
    ds.NumberOfFrames = 2**31 - 1
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out["2^31 frames"] = folder / "frames.dcm"
    ds.save_as(out["2^31 frames"], enforce_file_format=True)
    return out


def _encapsulated_variants(folder: Path, source: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    data = source.read_bytes()
    delimiter = data.rindex(b"\xfe\xff\xdd\xe0")
    out["no sequence delimiter"] = folder / "nodelim.dcm"
    out["no sequence delimiter"].write_bytes(data[:delimiter])
    ds = pydicom.dcmread(source)
    ds.NumberOfFrames = int(ds.NumberOfFrames) + 5
    out["more frames than fragments"] = folder / "frames.dcm"
    ds.save_as(out["more frames than fragments"])
    return out


def test_incomplete_images_are_refused_before_acknowledgement(
    listeners: Start, tmp_path: Path, samples_root: Path
) -> None:
    running = listeners()
    largest = max((samples_root / "dicom" / "DEMO-001").rglob("*.dcm"), key=os.path.getsize)
    study = str(pydicom.dcmread(largest, stop_before_pixels=True).StudyInstanceUID)
    variants = {
        **_native_variants(tmp_path / "native", generate_uid()),
        **_encapsulated_variants(tmp_path / "encapsulated", largest),
    }
    for name, path in variants.items():
        assert send(running.port, [path]) == [0xA900], name
    assert not list(running.spool.root.rglob("*.dcm"))
    assert running.catalog.study(study) is None
    reasons = [r["reason"] for r in DimseAudit(running.catalog).store_refusals()]
    assert len(reasons) == len(variants)
    assert any("truncated" in r for r in reasons) and any("fragments" in r for r in reasons)
    assert send(running.port, [largest]) == [0]  # the intact slide itself is fine


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs: a real file system that really fills up."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_mid_instance_answers_out_of_resources_and_recovers(
    listeners: Start, tmp_path: Path, small_disk: Path
) -> None:
    running = listeners(storage={"spool_dir": str(small_disk / "spool"), "min_free_mb": 0})
    big = tiny_wsi(tmp_path / "big", generate_uid(), payload=40 * 2**20)
    small = tiny_wsi(tmp_path / "small", generate_uid())
    assert send(running.port, [big, small]) == [0xA700, 0]  # a status, then the next works
    assert [p.name for p in running.spool.incoming.iterdir()] == []
    assert shutil.disk_usage(small_disk).free > 20 * 2**20  # the partial file is gone
    assert send(running.port, [small]) == [0]  # a duplicate, without a restart
    (refusal,) = DimseAudit(running.catalog).store_refusals()
    assert refusal["status"] == 0xA700 and "disk full" in refusal["reason"]


def test_start_up_records_complete_placements_and_quarantines_broken_ones(
    listeners: Start, tmp_path: Path
) -> None:
    running = listeners()
    running.server.stop()
    spool, catalog = running.spool, running.catalog
    study, series = generate_uid(), generate_uid()
    whole = tiny_wsi(tmp_path / "whole", study, series)
    broken = tiny_wsi(tmp_path / "broken", study, series)
    unlinked = tiny_wsi(tmp_path / "unlinked", study, series)
    # Crash after linking, before recording: a whole file and a broken one.
    for source in (whole, broken):
        copy = spool.incoming / f"{source.stem}.recv"
        shutil.copy(source, copy)
        header = pydicom.dcmread(copy, stop_before_pixels=True)
        spool.place(
            spool.prepare(copy),
            str(header.StudyInstanceUID),
            str(header.SeriesInstanceUID),
            str(header.SOPInstanceUID),
        )
    broken_final = next(p for p in spool.root.rglob("*.dcm") if p.name.startswith(broken.stem))
    broken_final.write_bytes(broken_final.read_bytes()[:-50])
    # Crash after naming the placement, before linking it.
    copy = spool.incoming / "u.recv"
    shutil.copy(unlinked, copy)
    header = pydicom.dcmread(copy, stop_before_pixels=True)
    prepared = spool.prepare(copy)
    placing = spool.incoming / (
        f"{prepared.token}_{header.StudyInstanceUID}_{header.SeriesInstanceUID}_"
        f"{header.SOPInstanceUID}.placing"
    )
    prepared.path.rename(placing)
    # And a partial data set of a transfer that never finished.
    (spool.incoming / "partial.recv").write_bytes(b"\0" * 100)

    counts = InstanceStore(catalog, Spool(spool.root)).recover()
    assert counts == {"recorded": 2, "known": 0, "quarantined": 1, "removed": 1}
    assert not list(spool.incoming.iterdir())
    assert [p.name for p in spool.quarantine_dir.iterdir()] == [broken_final.name]
    recorded = catalog.study(study)
    assert recorded is not None and recorded.series[0].instance_count == 2
    for row in _rows(running):
        assert _sha(Path(row.path)) == row.sha256


def test_deflated_data_sets_are_not_offered_nor_stored(listeners: Start, tmp_path: Path) -> None:
    from pynetdicom import AE

    from gateway.receive.guard import DatasetMismatchError
    from gateway.receive.validate import read_header

    running = listeners()
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.77.1.6", ["1.2.840.10008.1.2.1.99"])
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", running.port, ae_title="IHGAMP")
    assert assoc.is_established
    (rejected,) = assoc.rejected_contexts
    assert rejected.result == 0x04  # transfer syntaxes not supported: the sender must pick another
    assoc.release()
    # A deflated file that arrives another way (DICOMweb, C-GET) is refused before storing.
    ds = pydicom.dcmread(tiny_wsi(tmp_path / "d", generate_uid()))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    deflated = tmp_path / "deflated.dcm"
    ds.save_as(deflated, enforce_file_format=True)
    with pytest.raises(DatasetMismatchError, match="Deflated"):
        read_header(deflated, str(ds.SOPClassUID), str(ds.SOPInstanceUID))


def _jpeg_wsi(folder: Path, rows: int, columns: int, syntax: str) -> Path:
    """A one-frame WSI instance holding a real 128 x 128 JPEG / JPEG 2000 codestream."""
    import io

    import numpy as np
    from PIL import Image
    from pydicom.encaps import encapsulate

    image = Image.fromarray(np.full((128, 128, 3), 200, dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG2000" if syntax.endswith(".90") else "JPEG")
    path = tiny_wsi(folder, generate_uid())
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.Rows, ds.Columns = rows, columns
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = rows, columns
    ds.NumberOfFrames = 1
    ds.PhotometricInterpretation = "YBR_FULL_422" if syntax.endswith(".50") else "RGB"
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    "syntax", ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90"], ids=["jpeg", "jpeg2000"]
)
def test_a_frame_smaller_than_rows_and_columns_claim_is_refused(
    listeners: Start, tmp_path: Path, syntax: str
) -> None:
    from support.gateway import send_verbose

    running = listeners()
    liar = _jpeg_wsi(tmp_path / "liar", 65535, 65535, syntax)
    honest = _jpeg_wsi(tmp_path / "honest", 128, 128, syntax)
    (refused, ok) = send_verbose(running.port, [liar, honest])
    assert refused[0] == 0xA900 and "first frame is 128 x 128 pixels" in str(refused[1])
    assert ok[0] == 0


def test_a_patient_name_encoded_with_another_vr_is_refused(
    listeners: Start, tmp_path: Path
) -> None:
    from pydicom.dataelem import DataElement

    running = listeners()
    path = tiny_wsi(tmp_path / "vr", generate_uid())
    ds = pydicom.dcmread(path)
    ds[0x00100010] = DataElement(0x00100010, "UL", 4711)  # Patient's Name as a number
    ds.save_as(path, enforce_file_format=True)
    assert send(running.port, [path]) == [0xA900]
    (refusal,) = DimseAudit(running.catalog).store_refusals()
    assert "PatientName is encoded as UL; the standard says PN" in refusal["reason"]
