"""A site's own analysis through the registry only: routed over DICOM, reported, delivered.

The toy analyses (:mod:`support.toy_analysis`: tissue area of H&E slides, mean HU of a
CT volume, an input that is not a slide) live in the test package.
The gateway, run as an operator runs it (``ihgamp serve`` as a child process), learns of
it from its configuration alone (``[analyses] plugins`` and ``enabled``); no gateway
module names it. A study sent with pynetdicom is routed to it, its SR arrives in Orthanc,
its Observation in the FHIR peer and in the gateway's own FHIR API, and its result and
job counter are labelled with its name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from gateway.catalog import AnalysisStore, Catalog, JobStore, StudyState
from ihgamp_core.synthetic.samples import SampleCase
from support.fhir_peer import fhir_server
from support.gateway import GatewayProcess, free_port, send, settings_dict, wait_for, write_toml
from support.orthanc import Orthanc, orthanc
from support.toy_analysis import MODEL, NAME, PROCEDURE, SR_SERIES_NUMBER, VOLUME_NAME

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TESTS = Path(__file__).resolve().parents[1]
TOKEN = "plugin-analysis-token-0123456789"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def _ct_series(folder: Path, slices: int = 4) -> tuple[str, list[Path]]:
    """A small CT volume (16 x 16 x ``slices``, 40 + slice HU) as a scanner writes it."""
    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for index in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "CT^TOY", "CT-1", "", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = (
            "20261207",
            "120000",
            "CT1",
            "1",
        )
        ds.ReferringPhysicianName, ds.Modality, ds.BodyPartExamined = "", "CT", "ABDOMEN"
        ds.SeriesNumber, ds.InstanceNumber = 1, index + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [0.0, 0.0, 2.5 * index]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.8], 2.5
        ds.Rows = ds.Columns = 16
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.full((16, 16), 1064 + index, np.int16).tobytes()
        path = folder / f"ct-{index}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return study, paths


def _dispatch(pacs: Orthanc, ehr: str | None = None) -> dict[str, object]:
    """Results to the Orthanc (and the FHIR peer), retried quickly."""
    pacs_node = {"name": "pacs", "ae_title": pacs.aet, "host": "127.0.0.1"}
    return {
        "dicom": [{**pacs_node, "port": pacs.dicom_port}],
        "fhir": [{"name": "ehr", "url": ehr}] if ehr else [],
        "backoff_s": 0.5,
        "poll_interval_s": 0.2,
    }


def _codes(item: pydicom.Dataset) -> set[str]:
    """Every code value of an SR content tree."""
    out = {str(c.CodeValue) for c in item.get("ConceptCodeSequence", [])}
    for child in item.get("ContentSequence", []):
        out |= _codes(child)
    return out


def test_a_plugin_analysis_runs_end_to_end_without_touching_the_gateway(
    tmp_path: Path, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    case = sample_cases["DEMO-003"]
    uid = str(case.identity["study_instance_uid"])
    files = sorted((samples_root / "dicom" / case.case_id).rglob("*.dcm"))
    with orthanc() as pacs, fhir_server() as ehr:
        port, http = free_port(), free_port()
        data = settings_dict(
            tmp_path,
            dicom={"port": port},
            http={"port": http, "token": TOKEN},
            analyses={"plugins": ["support.toy_analysis"], "enabled": [NAME]},
            dispatch=_dispatch(pacs, ehr.url),
        )
        config = write_toml(tmp_path / "gateway.toml", data)
        url = data["catalog"]["url"]
        path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
        gw = GatewayProcess(config, tmp_path / "gateway.log", env={"PYTHONPATH": path}).start()
        try:
            gw.wait_listening(port)
            assert send(port, files) == [0] * len(files)
            catalog = Catalog(url)
            try:

                def scored() -> bool:
                    study = catalog.study(uid)
                    return study is not None and study.state == StudyState.SCORED

                wait_for(scored, timeout=240)
                (row,) = AnalysisStore(catalog).results(uid)
                jobs = JobStore(catalog).jobs(study_uid=uid)
            finally:
                catalog.close()
            document = json.loads(Path(row.result_path).read_text())
            sr_uid = document["outputs"]["sr_sop_instance_uid"]
            chain = document["outputs"]["fhir_observation_identifier"]
            orthanc_id = wait_for(lambda: pacs.find_instance(sr_uid), timeout=90)
            found = wait_for(
                lambda: ehr.search("Observation", f"urn:ihgamp:observation|{chain}"), timeout=60
            )
            auth = {"Authorization": f"Bearer {TOKEN}"}
            served = httpx.get(
                f"http://127.0.0.1:{http}/fhir/Observation",
                params={"code": f"urn:ihgamp:codes|{PROCEDURE.value}"},
                headers=auth,
                timeout=10,
            ).json()
            api = httpx.get(
                f"http://127.0.0.1:{http}/api/studies/{uid}", headers=auth, timeout=10
            ).json()
            metrics = httpx.get(f"http://127.0.0.1:{http}/metrics", headers=auth, timeout=10).text
        finally:
            assert gw.stop() == 0
        sr = pydicom.dcmread(DicomBytesIO(pacs.instance_file(orthanc_id)))  # type: ignore[arg-type]

    # Routed to the toy analysis only, one job, its own result row and outbox folder.
    assert [(j.analysis, j.job_key, j.state) for j in jobs] == [(NAME, NAME, "done")]
    assert row.analysis == NAME and row.model_key == MODEL and row.demo
    assert row.call in ("tissue-ok", "tissue-scant") and 0.0 < (row.value or 0.0) <= 1.0
    assert Path(row.result_path).parent.name == NAME
    assert len(document["fractions"]) == len({f.parent for f in files})
    # Its SR in the PACS, in the study it was computed from, with its own series number.
    assert str(sr.StudyInstanceUID) == uid and int(sr.SeriesNumber) == SR_SERIES_NUMBER
    assert "DEMO" in str(sr.SeriesDescription)
    assert PROCEDURE.value in _codes(sr)  # the procedure reported: the toy's own code
    # Its Observation at the EHR and in the gateway's FHIR API, for the study's patient.
    (observation,) = found
    assert observation["code"]["coding"][0]["code"] == PROCEDURE.value
    assert observation["subject"]["identifier"]["value"] == case.identity["patient_id"]
    assert [e["resource"]["code"]["coding"][0]["code"] for e in served["entry"]] == [
        PROCEDURE.value
    ]
    # The API lists it with every other analysis; the metrics carry its name.
    assert [(a["analysis"], a["call"]) for a in api["analyses"]] == [(NAME, row.call)]
    assert f'ihgamp_jobs_total{{analysis="{NAME}",outcome="done"}} 1.0' in metrics


def test_a_ct_volume_reaches_an_analysis_that_reads_volumes_not_slides(tmp_path: Path) -> None:
    """Inputs beyond slides: a CT series is routed, opened as files, reported and delivered."""
    uid, files = _ct_series(tmp_path / "ct")
    with orthanc() as pacs:
        port = free_port()
        data = settings_dict(
            tmp_path,
            dicom={"port": port, "sop_classes": [WSI, CT_IMAGE]},
            analyses={"plugins": ["support.toy_analysis"], "enabled": ["hrd", VOLUME_NAME]},
            dispatch=_dispatch(pacs),
        )
        config = write_toml(tmp_path / "gateway.toml", data)
        path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
        gw = GatewayProcess(config, tmp_path / "gateway.log", env={"PYTHONPATH": path}).start()
        try:
            gw.wait_listening(port)
            assert send(port, files) == [0] * len(files)
            catalog = Catalog(data["catalog"]["url"])
            try:

                def scored() -> bool:
                    study = catalog.study(uid)
                    return study is not None and study.state == StudyState.SCORED

                wait_for(scored, timeout=180)
                (row,) = AnalysisStore(catalog).results(uid)
                routing = AnalysisStore(catalog).routing(uid)
            finally:
                catalog.close()
            document = json.loads(Path(row.result_path).read_text())
            orthanc_id = wait_for(
                lambda: pacs.find_instance(document["outputs"]["sr_sop_instance_uid"]), timeout=90
            )
        finally:
            assert gw.stop() == 0
        sr = pydicom.dcmread(DicomBytesIO(pacs.instance_file(orthanc_id)))  # type: ignore[arg-type]

    # HRD (slides) was skipped, the CT was not refused as a slide of unknown stain.
    assert routing is not None and not routing["refusals"]
    assert [s["analysis"] for s in routing["skipped"]] == ["hrd"]
    (request,) = routing["requests"]
    assert [s["role"] for s in request["slides"]] == ["volume"]
    # The analysis read every voxel of the volume from its files: 40..43 HU.
    assert row.analysis == VOLUME_NAME and document["voxels"] == 4 * 16 * 16
    assert document["mean_hu"] == pytest.approx(41.5)
    # Its SR joined the CT study in the PACS, citing the CT images as evidence.
    assert str(sr.StudyInstanceUID) == uid
    cited = {
        str(item.ReferencedSOPInstanceUID)
        for series in sr.CurrentRequestedProcedureEvidenceSequence
        for s in series.ReferencedSeriesSequence
        for item in s.ReferencedSOPSequence
    }
    assert cited == {str(pydicom.dcmread(f).SOPInstanceUID) for f in files}
