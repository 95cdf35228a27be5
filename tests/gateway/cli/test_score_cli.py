"""``ihgamp score`` and ``ihgamp demo`` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.analyses import LoadContext
from gateway.cli.app import app
from ihgamp_core.analysis import (
    AnalysisOutcome,
    AnalysisRequest,
    AnalysisSpec,
    Applicability,
    InputKind,
    SeriesInput,
    Stain,
    request_slides,
)
from ihgamp_core.hrd.engine import Engine, ScoringOptions
from ihgamp_core.slide import open_slide
from ihgamp_core.slide.base import Slide
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
        "--analysis",
        "--stain",
        "--body-part",
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
    assert data["schema"] == "ihgamp-score/1" and data["case_id"] == "C1"
    (entry,) = [e for e in data["results"] if e["analysis"] == "hrd"]
    result = entry["result"]  # the engine's own result document, as before routing
    assert result["schema"] == "ihgamp-result/1"
    assert result["case_id"] == "C1" and result["n_tiles"] == 2
    assert result["model"]["demo"] is True
    assert "not for clinical use" in output
    assert result["call"] in {"hrd-likely", "hrd-unlikely"}
    assert entry["outcome"]["call"] == result["call"] and result["call"] in output
    # The DICOM header says H&E of an organ other than the breast: HER2 does not apply.
    assert "skipped her2: body part" in " ".join(output.split())


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
        path = outbox / case.identity["study_instance_uid"] / "hrd" / "result.json"
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
    assert "16 deliveries made (demo-lis, demo-pacs)" in out  # each result: PACS and LIS
    # Each result as HL7 v2: acknowledged by the laboratory system (hl7apy's MLLP server).
    assert out.count("acknowledged AA by the laboratory system:") == 8
    assert out.count("acknowledged AA by the laboratory system: her2-") == 2
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


# --- Routing: the analyses of the registry, as the gateway routes a study ---------------


@pytest.fixture()
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables one row per line (the console is 80 columns wide off a terminal).

    Through ``COLUMNS``, which the console reads each time: setting its ``width`` would
    leave it fixed for every later test of the process.
    """
    monkeypatch.setenv("COLUMNS", "220")


def _one_line_error(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], output
    return errors[0]


@pytest.mark.unit
def test_an_unknown_analysis_is_a_one_line_error_naming_the_known_ones(
    slide_factory: Callable[..., Path],
) -> None:
    from gateway import analyses

    code, output = _run("score", str(slide_factory()), "--analysis", "hrd", "--analysis", "ki67")
    assert code == 2, output
    line = _one_line_error(output)
    assert "unknown analysis 'ki67'" in line and "Traceback" not in output
    assert f"(known: {', '.join(analyses.names())})" in line
    assert len(output.strip().splitlines()) == 1, output  # nothing routed, nothing run


@pytest.mark.unit
def test_no_analysis_applies_says_what_would_make_one_apply(
    slide_factory: Callable[..., Path],
) -> None:
    """An SVS states no body part: a breast-only analysis skips it; no model is loaded."""
    code, output = _run("score", str(slide_factory()), "--analysis", "her2", "--no-progress")
    assert code == 2, output
    assert output.splitlines()[0] == "skipped her2: body part unknown is not among ['BREAST']"
    line = _one_line_error(output)
    assert line.startswith("error: no analysis applies to these slides (her2: body part unknown")
    assert "--body-part" in line and "--stain" in line and "--analysis" in line


@pytest.mark.unit
def test_a_slide_of_unknown_stain_is_refused_on_one_line(
    slide_factory: Callable[..., Path],
) -> None:
    svs = slide_factory()
    code, output = _run("score", str(svs), "--stain", "unknown", "--no-progress")
    assert code == 2, output
    refused = [line for line in output.splitlines() if line.startswith("refused")]
    assert len(refused) == 1 and refused[0].startswith("refused (unknown-stain): slide ")
    assert str(svs) in refused[0]
    assert "skipped hrd: no slide with a stain it reads (he)" in output
    assert _one_line_error(output).startswith("error: nothing to score: routing refused")


@dataclass(frozen=True)
class _WidthResult:
    keys: tuple[str, ...]
    width: int
    case_id: str


class _WidthAnalysis:
    """An analysis the CLI does not know: the level-0 width of its H&E slides."""

    spec = AnalysisSpec(
        "slide-width", Applicability(stains=frozenset({Stain.HE}), inputs=InputKind.SLIDES)
    )
    model_key = "slide-width/1"

    def run(
        self, request: AnalysisRequest, inputs: Mapping[str, Slide | SeriesInput], case_id: str
    ) -> _WidthResult:
        slides = request_slides(request, inputs)
        width = sum(s.levels[0].width for s in slides.values())
        return _WidthResult(tuple(slides), width, case_id)

    def outcome(self, result: _WidthResult) -> AnalysisOutcome:
        call = "wide" if result.width > 1000 else "narrow"
        return AnalysisOutcome("slide-width", call, float(result.width), (), self.model_key, True)


@pytest.fixture()
def width_analysis(monkeypatch: pytest.MonkeyPatch) -> list[LoadContext]:
    """Register the width analysis in a copy of the registry; returns its load contexts."""
    from gateway import analyses
    from gateway.analyses import AnalysisEntry, registry

    analyses.names()  # the built-ins, registered once
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    contexts: list[LoadContext] = []

    def load(context: LoadContext) -> _WidthAnalysis:
        contexts.append(context)
        return _WidthAnalysis()

    analyses.register(
        AnalysisEntry(spec=_WidthAnalysis.spec, load=load, title="Slide width (test)")
    )
    return contexts


@pytest.mark.unit
def test_an_analysis_of_the_registry_runs_on_a_vendor_file_through_the_contract(
    tmp_path: Path,
    slide_factory: Callable[..., Path],
    width_analysis: list[LoadContext],
    wide_console: None,
) -> None:
    """No model needed: the CLI routes, loads, runs and reports an analysis it never names."""
    svs = slide_factory(width_um=768.0, base_mpp=0.5)  # 1536 px wide
    out = tmp_path / "width.json"
    code, output = _run(
        "score", str(svs), "--analysis", "slide-width", "--device", "cpu", "--out", str(out),
        "--case-id", "W1", "--no-progress",
    )  # fmt: skip
    assert code == 0, output
    (context,) = width_analysis
    assert context.device == "cpu" and context.engine is None  # not an analysis of the engine
    row = f"│ slide-width │ slide-width │ {svs.name} (he) │ wide │ 1536.000 │ - │ none │ DEMO │"
    assert row in [" ".join(line.split()) for line in output.splitlines()], output
    assert "slide-width model: slide-width/1 (DEMO: synthetic training data, not for" in output
    data = json.loads(out.read_text())
    assert data["case_id"] == "W1" and data["refusals"] == [] and data["skipped"] == []
    (entry,) = data["results"]
    assert entry["analysis"] == "slide-width" and entry["job_key"] == "slide-width"
    assert entry["request"]["slides"] == [{"key": str(svs), "role": "he", "block": None}]
    assert entry["slides"] == {str(svs): str(svs)}
    outcome = {
        "analysis": "slide-width",
        "call": "wide",
        "value": 1536.0,
        "qc_flags": [],
        "model_key": "slide-width/1",
        "demo": True,
        "path": None,
        "threshold": None,
    }
    # Its result type has no document of its own: the outcome's fields stand in.
    assert entry["outcome"] == outcome and entry["result"] == outcome


@pytest.fixture(scope="module")
def her2_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The breast case with an H&E and a HER2 IHC slide of one block (DICOM)."""
    from ihgamp_core.her2.samples import build_her2_samples

    root = tmp_path_factory.mktemp("her2")
    cases = {c.case_id: c for c in build_her2_samples(root)}
    assert set(cases["HER2-DEMO-01"].slides) == {"he", "ihc"}
    return root / "dicom" / "HER2-DEMO-01"


@pytest.mark.slow
def test_a_breast_he_and_her2_ihc_pair_is_routed_to_both_analyses(
    tmp_path: Path, her2_pair: Path, wide_console: None
) -> None:
    out = tmp_path / "pair.json"
    code, output = _run(
        "score", str(her2_pair), "--analysis", "her2", "--analysis", "hrd",
        "--max-tiles", "2", "--min-tiles", "1", "--device", "cpu", "--out", str(out),
        "--no-progress",
    )  # fmt: skip
    assert code == 0, output
    data = json.loads(out.read_text())
    assert data["case_id"] == "HER2-DEMO-01-HE" and data["refusals"] == []
    her2, hrd = data["results"]  # in the order of --analysis
    # HER2 on the block's pair (its headers name block, stains and breast), HRD on the H&E.
    assert her2["analysis"] == "her2" and her2["job_key"] == "her2:S26-0011 A1"
    assert her2["request"]["path"] == "dual" and her2["request"]["pairing"] == "block"
    assert [s["role"] for s in her2["request"]["slides"]] == ["he", "ihc"]
    assert her2["result"]["schema"] == "ihgamp-her2-result/1"
    assert her2["result"]["call"] == her2["outcome"]["call"]
    assert her2["outcome"]["call"] in {"her2-0", "her2-1+", "her2-2+", "her2-3+", "no-call"}
    assert hrd["analysis"] == "hrd" and hrd["job_key"] == "hrd"
    assert [s["role"] for s in hrd["request"]["slides"]] == ["he"]
    assert hrd["request"]["slides"][0]["key"] == her2["request"]["slides"][0]["key"]
    assert hrd["result"]["schema"] == "ihgamp-result/1" and hrd["result"]["n_tiles"] == 2
    assert hrd["result"]["call"] in {"hrd-likely", "hrd-unlikely"}
    # Both calls in the one table, with their values and the pair's modality path.
    rows = [" ".join(line.split()) for line in output.splitlines()]
    her2_value = f"{her2['outcome']['value']:.3f}"
    hrd_value = f"{hrd['result']['probability']:.3f}"
    assert any(
        f"│ her2 │ her2:S26-0011 A1 │ HER2-DEMO-01-HE (he) │ {her2['outcome']['call']} │ "
        f"{her2_value} │ dual │" in row
        for row in rows
    ), output
    hrd_row = f"│ hrd │ hrd │ HER2-DEMO-01-HE (he) │ {hrd['result']['call']} │ {hrd_value} │"
    assert any(hrd_row in row for row in rows), output
    assert any("HER2-DEMO-01-IHC (ihc)" in row for row in rows), output
    assert "her2 model: " in output and "hrd model: " in output
    assert not any(line.startswith(("refused", "skipped")) for line in rows), output


@pytest.mark.slow
def test_a_vendor_svs_is_scored_by_hrd_through_the_routed_road(
    tmp_path: Path, slide_factory: Callable[..., Path], engine: Engine, wide_console: None
) -> None:
    """The SVS states no stain: --stain (H&E by default) makes it HRD's, as the engine scores it."""
    svs = slide_factory()
    out = tmp_path / "svs.json"
    code, output = _run(
        "score", str(svs), "--analysis", "hrd", "--max-tiles", "3", "--min-tiles", "1",
        "--device", "cpu", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert code == 0, output
    data = json.loads(out.read_text())
    (entry,) = data["results"]
    assert entry["analysis"] == "hrd" and entry["job_key"] == "hrd"
    assert entry["request"]["slides"] == [{"key": str(svs), "role": "he", "block": None}]
    result = entry["result"]
    assert result["case_id"] == svs.name and result["n_tiles"] == 3
    with open_slide(svs) as slide:
        direct = engine.score_case([slide], svs.name, ScoringOptions(max_tiles=3, min_tiles=1))
    assert direct.probability is not None
    assert result["probability"] == pytest.approx(direct.probability, abs=1e-4)
    assert result["call"] == str(direct.call) == entry["outcome"]["call"]
    row = f"│ hrd │ hrd │ {svs.name} (he) │ {direct.call} │ {direct.probability:.3f} │ - │ none │"
    assert any(row in " ".join(line.split()) for line in output.splitlines()), output
