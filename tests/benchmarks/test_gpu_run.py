"""The prepared GPU run: its CPU rehearsal end to end, its step runner, its wheels."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.gpu.run import dry_config, gpu_config, run_step, targets
from bench.gpu.wheels import OPTIONAL, closure, pins, verify

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_run.sh"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """`bench/gpu_run.sh --dry-run` once, its imports traced: (out folder, trace, seconds)."""
    tmp = tmp_path_factory.mktemp("gpu-run")
    out, trace = tmp / "out", tmp / "trace"
    env = {
        **os.environ,
        "OUT": str(out),
        "PYTHON": sys.executable,
        "IHGAMP_TRACE_IMPORTS": str(trace),
        "CUDA_VISIBLE_DEVICES": "",
    }
    started = time.perf_counter()
    result = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--cache", str(tmp / "cache")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return out, trace, seconds


@pytest.mark.slow
def test_dry_run_runs_every_step_and_reports_every_figure(
    dry_run: tuple[Path, Path, float],
) -> None:
    out, _, seconds = dry_run
    files = sorted(p.name for p in out.iterdir())
    assert files == ["gpu-run.json", "gpu-run.log"]  # what the device tool brings back
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files)
    log = (out / "gpu-run.log").read_text()
    assert "gpu-run check passed" in log
    report = json.loads((out / "gpu-run.json").read_text())
    assert report["dry_run"] is True and "no figure here is a GPU figure" in report["note"]
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == [
        "environment", "slides", "throughput-dicom", "throughput-svs", "tuning",
        "equivalence", "latency",
    ]  # fmt: skip
    assert {s["status"] for s in steps.values()} == {"ok"}, steps
    assert report["elapsed_s"] <= seconds + 1  # the script's clock starts in whole seconds
    assert report["environment"]["torch"] and report["environment"]["cpu_count"] >= 1
    assert report["environment"]["vendor_tile_reader"] == "tifffile"  # as on the GPU box

    dicom = {r["method"]: r for r in steps["throughput-dicom"]["result"]["results"]}
    assert set(dicom) == set(dry_config().dicom_methods.split(","))
    assert all(r["tiles"] == dicom["notebook"]["tiles"] > 0 for r in dicom.values())
    profile = steps["throughput-dicom"]["result"]["profile"]
    assert profile["method"] == "engine" and profile["stages"]["backbone_s"] > 0
    assert profile["compressed_tiles"] == profile["tiles"]  # stored JPEG tiles, no pixels
    svs = {r["method"]: r for r in steps["throughput-svs"]["result"]["results"]}
    assert svs["engine"]["vendor_tile_readers"] == ["tifffile"]  # without opentile ...
    assert svs["engine"]["compressed_tiles"] == svs["engine"]["tiles"]  # ... still compressed
    tuning = {r["method"]: r for r in steps["tuning"]["result"]["results"]}
    assert tuning["engine:fp32+cudagraphs"] == {
        "method": "engine:fp32+cudagraphs",
        "skipped": "CUDA graphs need a CUDA device",
    }
    assert tuning["engine:fp32+compile"]["warmup_s"] > 0

    found = report["targets"]
    for fmt in ("dicom", "svs"):
        assert found[fmt]["engine_tiles_per_s"]["measured"] > 0
        assert found[fmt]["engine_vs_notebook"]["measured"] > 0
    assert found["dicom"]["engine_vs_dataloader"]["measured"] > 0
    (eq,) = found["equivalence"]
    assert eq["mean_cosine"]["met"] and eq["worst_tile_explained"]
    assert [c["case"] for c in eq["case_probabilities"]] == ["DEMO-001", "DEMO-002"]
    worst = steps["equivalence"]["result"]["engines"][0]["worst_tiles"][0]["why"]
    assert worst["cause"] in ("decode_only", "preprocess_only", "precision_only")
    assert found["latency_s"]["measured"] > 0


@pytest.mark.slow
def test_dry_run_imports_nothing_the_gpu_machine_lacks(dry_run: tuple[Path, Path, float]) -> None:
    _, trace, _ = dry_run
    assert len(list(trace.glob("*.txt"))) >= 7  # the steps and the gateway process
    result = closure(trace)
    assert "open-clip-torch" in result["imported"] and "torch" in result["imported"]
    assert result["missing"] == [], result  # add it to bench/gpu/wheels.txt (and pin it)
    assert result["carried_unused"] == [], result


@pytest.mark.unit
def test_an_overrunning_step_is_cut_and_a_failing_one_recorded(tmp_path: Path) -> None:
    started = time.perf_counter()
    cut = run_step("sleeper", ["timeit", "-n", "1", "import time; time.sleep(60)"], 2, tmp_path, {})
    assert cut["status"] == "cut" and cut["rc"] is None
    assert time.perf_counter() - started < 20
    failed = run_step("broken", ["json.tool", str(tmp_path / "missing.json")], 30, tmp_path, {})
    assert failed["status"] == "failed" and failed["rc"] != 0
    assert any("missing.json" in line for line in failed["tail"])


@pytest.mark.unit
def test_the_import_check_fails_fast_naming_what_is_missing(tmp_path: Path) -> None:
    python = tmp_path / "python-without-site-packages"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    python.chmod(0o755)
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": str(python)}
    started = time.perf_counter()
    result = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 3
    assert time.perf_counter() - started < 20
    log = (tmp_path / "out" / "gpu-run.log").read_text()
    assert "gpu-run check FAILED" in log and "cannot import torch" in log
    assert "make gpu-wheels" in log
    assert not (tmp_path / "out" / "gpu-run.json").exists()  # nothing ran


@pytest.mark.unit
def test_gpu_budgets_fit_eight_minutes() -> None:
    config = gpu_config()
    # total_s counts from the script's start (wheels and import check included); a cut
    # step takes at most 15 s more to die (SIGTERM, then SIGKILL).
    assert sum(config.budgets.values()) + 20 <= config.total_s
    assert config.total_s + 15 + 5 < 8 * 60


@pytest.mark.unit
def test_targets_compare_the_best_engine_with_each_baseline() -> None:
    rows = [
        {"method": "notebook", "tiles_per_s": 500.0},
        {"method": "dataloader", "tiles_per_s": 1000.0},
        {"method": "engine", "tiles_per_s": 6000.0},
        {"method": "engine:bf16+channels-last", "skipped": "why not"},
    ]
    records = {
        "throughput-dicom": {"result": {"results": rows}},
        "tuning": {"streamed": [{"method": "engine:bf16+compile", "tiles_per_s": 8000.0}]},
        "latency": {"result": {"ack_to_result_s": 16.5}},
    }
    found = targets(records)
    assert found["dicom"]["best_engine"] == "engine:bf16+compile"  # a cut step's rows count
    assert found["dicom"]["engine_tiles_per_s"]["met"] is True
    assert found["dicom"]["engine_vs_notebook"] == {"target": 10.0, "measured": 16.0, "met": True}
    assert found["dicom"]["engine_vs_dataloader"]["measured"] == 8.0
    assert found["svs"]["engine_tiles_per_s"]["met"] is None  # not measured is not a miss
    assert found["latency_s"] == {
        "target": 15.0,
        "measured": 16.5,
        "met": False,
        "short_by": "10% over",
    }


@pytest.mark.unit
def test_wheel_folder_check_catches_what_would_break_the_device_install(tmp_path: Path) -> None:
    version = pins()["pydicom"]
    for name in (
        f"pydicom-{version}-py3-none-any.whl",
        "pydicom-0.1-py3-none-any.whl",  # a second version
        "sqlalchemy-9.9-cp313-cp313-manylinux_2_17_x86_64.whl",  # not CPython 3.12
        "wsidicom-9.9-py3-none-win_amd64.whl",  # not Linux
    ):
        (tmp_path / name).write_bytes(b"x")
    found = "\n".join(verify(tmp_path))
    assert "two wheels of pydicom" in found
    assert "sqlalchemy-9.9-cp313" in found and "win_amd64" in found
    assert "open_clip_torch: no wheel" in found
    assert re.search(r"sqlalchemy: wheel 9\.9, constraints.txt pins", found, re.I)


@pytest.mark.unit
def test_closure_tells_carried_device_and_optional_from_missing(tmp_path: Path) -> None:
    (tmp_path / "1.txt").write_text("numpy\nopen_clip\nimagecodecs\n")
    assert closure(tmp_path)["missing"] == []
    assert "imagecodecs" in OPTIONAL and "open-clip-torch" in closure(tmp_path)["imported"]
    (tmp_path / "2.txt").write_text("celery\n")  # installed here, neither carried nor there
    assert closure(tmp_path)["missing"] == ["celery"]


@pytest.mark.unit
def test_steps_after_failed_slides_are_skipped_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.gpu.run import main

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the slide cache should be\n")
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    monkeypatch.delenv("IHGAMP_GPU_RUN_T0", raising=False)
    assert main(["--dry-run", "--only", "slides,latency", "--cache", str(blocker)]) == 1
    report = json.loads((tmp_path / "out" / "gpu-run.json").read_text())
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["slides"]["status"] == "failed"
    assert steps["latency"] == {"step": "latency", "status": "skipped", "why": "slides step failed"}
    assert report["targets"]["latency_s"]["measured"] is None
