"""``ihgamp score`` and ``ihgamp demo`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.app import app
from ihgamp_core.synthetic.samples import SampleCase

runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _assert_clean_error(code: int, output: str, *phrases: str) -> None:
    assert code == 2, output
    assert "error:" in output and "Traceback" not in output
    for phrase in phrases:
        assert phrase in " ".join(output.split()), output


@pytest.mark.unit
def test_help_explains_every_option() -> None:
    code, output = _run("score", "--help")
    assert code == 0
    for option in (
        "--case-id",
        "--out",
        "--device",
        "--max-tiles",
        "--backbone-checkpoint",
        "--head",
        "--mpp",
    ):
        assert option in output


@pytest.mark.unit
def test_truncated_slide(tmp_path: Path, slide_factory: Callable[..., Path]) -> None:
    data = slide_factory().read_bytes()
    bad = tmp_path / "cut.svs"
    bad.write_bytes(data[:2000])
    code, output = _run("score", str(bad))
    _assert_clean_error(code, output, "cut.svs")


@pytest.mark.unit
def test_non_slide_file(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.4 not a slide")
    _assert_clean_error(*_run("score", str(path)), "not a slide")


@pytest.mark.unit
def test_dicom_that_is_not_wsi(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(tmp_path / "mr.dcm", enforce_file_format=True)
    _assert_clean_error(*_run("score", str(tmp_path / "mr.dcm")), "MR Image Storage")


@pytest.mark.unit
def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    _assert_clean_error(*_run("score", str(tmp_path)), "no slides found")
    _assert_clean_error(*_run("score", str(tmp_path / "nope.svs")), "no such file")


@pytest.mark.unit
def test_missing_head(
    tmp_path: Path, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    slide = samples_root / sample_cases["DEMO-001"].svs[0]
    code, output = _run("score", str(slide), "--head", str(tmp_path))
    _assert_clean_error(code, output, "no head artifact")


@pytest.mark.unit
def test_unknown_device(samples_root: Path, sample_cases: dict[str, SampleCase]) -> None:
    slide = samples_root / sample_cases["DEMO-001"].svs[0]
    _assert_clean_error(*_run("score", str(slide), "--device", "tpu"), "unknown device")


@pytest.mark.slow
def test_score_writes_the_json_result(
    tmp_path: Path, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    out = tmp_path / "r" / "result.json"
    slide = samples_root / sample_cases["DEMO-001"].dicom[0]
    code, output = _run(
        "score",
        str(slide),
        "--case-id",
        "C1",
        "--max-tiles",
        "2",
        "--min-tiles",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
    )
    assert code == 0, output
    data = json.loads(out.read_text())
    assert data["case_id"] == "C1" and data["n_tiles"] == 2
    assert data["model"]["demo"] is True
    assert "not for clinical use" in output
    assert data["call"] in {"hrd-likely", "hrd-unlikely"}


@pytest.mark.slow
def test_demo_command_end_to_end(
    tmp_path: Path, samples_root: Path, sample_cases: dict[str, SampleCase]
) -> None:
    """The README's main command, as a subprocess: gateway + storescu + scoring."""
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--out", str(tmp_path), "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outbox = tmp_path / "gateway" / "outbox"
    results = {}
    for case_id, case in sample_cases.items():
        path = outbox / case.identity["study_instance_uid"] / "result.json"
        results[case_id] = json.loads(path.read_text())
    assert set(results) == {"DEMO-001", "DEMO-002", "DEMO-003", "CMU-1-SMALL"}
    # The demo head has learnt the synthetic signal: the HRD-like case scores higher.
    assert results["DEMO-001"]["probability"] > results["DEMO-002"]["probability"]
    assert results["DEMO-001"]["call"] == "hrd-likely"
    assert results["DEMO-002"]["call"] == "hrd-unlikely"
    assert len(results["DEMO-002"]["slides"]) == 2
    for data in results.values():
        assert data["tiling"]["max_tiles"] == 32
        assert all(s["tiles_used"] <= 32 for s in data["slides"])
    assert results["DEMO-003"]["triage"]["category"] == "not-validated"  # squamous
    assert results["CMU-1-SMALL"]["triage"]["category"] == "manual-review"  # QC flag
    out = " ".join(proc.stdout.split())
    assert "sent 2 slide(s) with storescu" in out
    # The two breast cases: HRD on their H&E, HER2 on each (pair: dual; H&E alone: IHC
    # missing), one SR each in the PACS, each Observation read back, all DEMO.
    assert "HER2-DEMO-01: sent H&E + HER2 IHC (breast, block S26-0011 A1)" in out
    assert "HER2-DEMO-02: sent H&E (breast, block S26-0012 A1)" in out
    assert "8 result(s) delivered to the PACS" in out
    assert out.count("SR in the PACS: IHGAMP HRD estimate (AI) DEMO") == 6
    assert out.count("LOINC 107286-7") == 6 and "security AIAST" in out
    assert "HER2-DEMO-01 her2:S26-0011 A1: her2-" in out and "(path dual)" in out
    assert "HER2-DEMO-02 her2:S26-0012 A1: her2-" in out
    assert "(path he-only-synthesised-ihc)" in out
    assert out.count("SR in the PACS: IHGAMP HER2 estimate (AI)") == 2
    assert "IHGAMP HER2 estimate (AI) no IHC DEMO" in out
    assert out.count("LOINC 85319-2") == 2
    assert out.count("DEMO model - synthetic training data - not for clinical use") == 2
    assert "IHGAMP demo results" in out and "not for clinical use" in out


@pytest.mark.slow
def test_offline_demo(tmp_path: Path, samples_root: Path) -> None:
    code, output = _run(
        "demo", "--offline", "--out", str(tmp_path), "--max-tiles", "2", "--device", "cpu"
    )
    assert code == 0, output
    assert sorted(p.stem for p in tmp_path.glob("*.json")) == [
        "CMU-1-SMALL",
        "DEMO-001",
        "DEMO-002",
        "DEMO-003",
    ]
