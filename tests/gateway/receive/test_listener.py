"""The DICOM listener with real SCUs over loopback: pynetdicom and DCMTK storescu."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from gateway.catalog.dimse_audit import DimseAudit
from ihgamp_core.synthetic.samples import SampleCase
from support.gateway import dataset_bytes, send, storescu, tiny_wsi, wait_for
from support.listener import Listener, start_listener

pytestmark = pytest.mark.integration


def _spooled(listener: Listener) -> dict[str, Path]:
    return {
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
        for p in listener.spool.root.rglob("*.dcm")
    }


def test_echo(listener: Listener) -> None:
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="IHGAMP")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    assoc.release()


def test_pynetdicom_scu_stores_the_sample_study_byte_identical(
    listener: Listener, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    files = sorted((samples_root / "dicom" / "DEMO-002").rglob("*.dcm"))
    assert send(listener.port, files) == [0] * len(files)
    spooled = _spooled(listener)
    assert len(spooled) == len(files)
    for path in files:
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(spooled[uid]) == dataset_bytes(path)  # stored as sent
    study = listener.catalog.study(sample_cases["DEMO-002"].identity["study_instance_uid"])
    assert study is not None and len(study.series) == 2
    assert all(s.finest_volume_mpp is not None for s in study.series)
    assert not list(listener.spool.incoming.iterdir())


def test_dcmtk_storescu_stores_the_sample_study_byte_identical(
    listener: Listener, samples_root: Path
) -> None:
    folder = samples_root / "dicom" / "DEMO-001"
    proc = storescu(listener.port, [folder])
    assert proc.returncode == 0, proc.stderr
    files = sorted(folder.rglob("*.dcm"))
    spooled = _spooled(listener)
    for path in files:
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(spooled[uid]) == dataset_bytes(path)
    meta = pydicom.dcmread(next(iter(spooled.values())), stop_before_pixels=True).file_meta
    assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"  # not transcoded


def test_twenty_concurrent_associations_two_hundred_instances(tmp_path: Path) -> None:
    listener = start_listener(
        tmp_path, dicom={"max_associations": 24, "max_associations_per_ae": 24}
    )
    batches = []
    for a in range(20):
        study = generate_uid()
        series = generate_uid()
        batches.append([tiny_wsi(tmp_path / f"b{a}", study, series) for _ in range(10)])
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda files: send(listener.port, files), batches))
    assert all(status == 0 for statuses in results for status in statuses)
    spooled = _spooled(listener)
    assert len(spooled) == 200
    for files in batches:
        for path in files:
            uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
            assert (
                hashlib.sha256(dataset_bytes(spooled[uid])).digest()
                == hashlib.sha256(dataset_bytes(path)).digest()
            )
    studies = listener.catalog.studies()
    assert len(studies) == 20 and all(s.series[0].instance_count == 10 for s in studies)

    def released() -> list[dict[str, object]]:
        done = [a for a in DimseAudit(listener.catalog).associations() if a["result"] == "released"]
        return done if len(done) == 20 else []

    audits = wait_for(released, timeout=10)  # recorded when each association's thread ends
    assert len(audits) == 20 and sum(a["instances_received"] for a in audits) == 200
    listener.server.stop()


def test_resend_is_idempotent_and_changed_content_is_a_new_version(
    tmp_path: Path, listener: Listener
) -> None:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    original = tiny_wsi(tmp_path / "a", study, series, sop)
    assert send(listener.port, [original, original]) == [0, 0]
    assert len(list(listener.spool.root.rglob("*.dcm"))) == 1
    changed = tiny_wsi(tmp_path / "b", study, series, sop, ContentDate="20260102")
    assert send(listener.port, [changed]) == [0]
    stored = list(listener.spool.root.rglob("*.dcm"))
    assert len(stored) == 2 and all(p.name.startswith(f"{sop}.") for p in stored)
    version, sha, path = listener.catalog.current_instance(sop)  # type: ignore[misc]
    assert version == 2 and dataset_bytes(Path(path)) == dataset_bytes(changed)
    first = next(p for p in stored if str(p) != path)
    assert dataset_bytes(first) == dataset_bytes(original)  # the acknowledged file is kept


def _raw(tmp_path: Path, name: str, body: bytes, sop_class: str, sop_uid: str) -> Path:
    """A file whose File Meta is valid and whose data set is ``body``."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / name
    with path.open("wb") as fh:
        fh.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(fh, meta)  # type: ignore[arg-type]
        fh.write(body)
    return path


def test_bad_datasets_get_failure_statuses_and_the_association_survives(
    tmp_path: Path, listener: Listener
) -> None:
    study = generate_uid()
    good = tiny_wsi(tmp_path / "g", study)
    # A WSI without its Total Pixel Matrix: does not match its SOP class.
    no_matrix = tiny_wsi(tmp_path / "m", study)
    ds = pydicom.dcmread(no_matrix)
    del ds.TotalPixelMatrixColumns
    ds.save_as(no_matrix)
    # Garbage after a valid File Meta: cannot be understood.
    garbage = _raw(
        tmp_path,
        "garbage.dcm",
        b"\x08\x00\x16\x00UI\xff\xff" + os.urandom(64),
        "1.2.840.10008.5.1.4.1.1.77.1.6",
        generate_uid(),
    )
    # A path-traversal attempt in a UID: cannot be understood, nothing written outside.
    evil = tiny_wsi(tmp_path / "e", study)
    ds = pydicom.dcmread(evil)
    ds.SeriesInstanceUID = "../../../../tmp/evil"
    ds.save_as(evil)
    statuses = send(listener.port, [no_matrix, garbage, evil, good])
    assert statuses[0] == 0xA900
    assert statuses[1] == 0xC000
    assert statuses[2] == 0xC000
    assert statuses[3] == 0  # the same association still stores good data
    assert len(list(listener.spool.root.rglob("*.dcm"))) == 1
    assert not list(listener.spool.incoming.iterdir())
    audit = DimseAudit(listener.catalog).associations()[0]
    assert audit["instances_failed"] == 3 and audit["instances_received"] == 1
    refusals = DimseAudit(listener.catalog).store_refusals()
    assert sorted(r["status"] for r in refusals) == [0xA900, 0xC000, 0xC000]
    assert all(r["association_id"] == audit["id"] and r["reason"] for r in refusals)


def test_unsupported_sop_class_is_refused_at_negotiation(listener: Listener) -> None:
    ae = AE(ae_title="SCANNER")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2")  # CT Image Storage
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", listener.port, ae_title="IHGAMP")
    assert assoc.is_established
    (rejected,) = assoc.rejected_contexts
    assert rejected.abstract_syntax == "1.2.840.10008.5.1.4.1.1.2"
    assert rejected.result == 0x03  # abstract syntax not supported
    assert assoc.send_c_echo().Status == 0
    assoc.release()


def test_unknown_ae_wrong_host_and_wrong_called_ae_are_rejected(tmp_path: Path) -> None:
    running = start_listener(
        tmp_path,
        dicom={
            "allowed_aes": [{"ae_title": "SCANNER"}, {"ae_title": "REMOTE", "host": "10.255.0.1"}]
        },
    )
    try:
        file = tiny_wsi(tmp_path / "x", generate_uid())
        for calling, called in (
            ("INTRUDER", "IHGAMP"),
            ("REMOTE", "IHGAMP"),
            ("SCANNER", "SOMEONE"),
        ):
            with pytest.raises(ConnectionError, match="rejected=True"):
                send(running.port, [file], calling_ae=calling, called_ae=called)
        assert send(running.port, [file]) == [0]  # the server keeps serving
        reasons = [a["reason"] or "" for a in DimseAudit(running.catalog).associations()]
        assert any("'INTRUDER' is not in dicom.allowed_aes" in r for r in reasons)
        assert any("must connect from 10.255.0.1" in r for r in reasons)
        assert any("called AE 'SOMEONE' is not 'IHGAMP'" in r for r in reasons)
    finally:
        running.server.stop()


def test_per_ae_association_limit(tmp_path: Path) -> None:
    running = start_listener(tmp_path, dicom={"max_associations_per_ae": 1})
    try:
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context("1.2.840.10008.1.1")
        first = ae.associate("127.0.0.1", running.port, ae_title="IHGAMP")
        assert first.is_established
        second = ae.associate("127.0.0.1", running.port, ae_title="IHGAMP")
        assert second.is_rejected and second.acceptor.primitive.result == 0x02  # transient
        other = AE(ae_title="STORESCU")
        other.add_requested_context("1.2.840.10008.1.1")
        third = other.associate("127.0.0.1", running.port, ae_title="IHGAMP")
        assert third.is_established  # another AE has its own budget
        third.release()
        first.release()
    finally:
        running.server.stop()


def test_disk_floor_refuses_with_out_of_resources(tmp_path: Path, listener: Listener) -> None:
    file = tiny_wsi(tmp_path / "x", generate_uid())
    listener.spool.min_free_bytes = listener.spool.free_bytes() + 2**40
    assert send(listener.port, [file]) == [0xA700]
    assert not list(listener.spool.root.rglob("*.dcm"))
    listener.spool.min_free_bytes = 0  # space freed: the next association succeeds
    assert send(listener.port, [file]) == [0]


def test_tls_requires_a_client_certificate_from_the_ca(tmp_path: Path, pki: Path) -> None:
    import ssl

    running = start_listener(
        tmp_path,
        dicom={
            "tls": {
                "enabled": True,
                "certificate": str(pki / "server.pem"),
                "private_key": str(pki / "server.key"),
                "ca_certificates": str(pki / "ca.pem"),
                "require_client_certificate": True,
            }
        },
    )
    try:
        file = tiny_wsi(tmp_path / "x", generate_uid())

        def client(cert: str | None) -> ssl.SSLContext:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.pem"))
            if cert:
                ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
            return ctx

        assert send(running.port, [file], tls=(client("client"), "127.0.0.1")) == [0]
        for cert in (None, "rogue"):
            with pytest.raises(ConnectionError):
                send(running.port, [file], tls=(client(cert), "127.0.0.1"))
        with pytest.raises(ConnectionError):  # plain TCP to a TLS port
            send(running.port, [file])
        audit = wait_for(
            lambda: [
                a for a in DimseAudit(running.catalog).associations() if a["result"] == "released"
            ],
            timeout=10,
        )
        assert len(audit) == 1 and audit[0]["tls"]
    finally:
        running.server.stop()
