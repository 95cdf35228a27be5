"""``ihgamp her2 synth | train | evaluate`` end to end, and their one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.app import app
from ihgamp_core.her2.data import SYNTHETIC_MARKER
from ihgamp_core.her2.model import load_her2

pytestmark = pytest.mark.slow

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())  # undo the console's wrapping


def test_synth_train_evaluate(tmp_path: Path) -> None:
    data = tmp_path / "bci"
    code, out = _invoke(
        "her2", "synth", "--out", str(data), "--train", "24", "--test", "8",
        "--size-px", "64", "--mpp", "1.0", "--seed", "5",
    )  # fmt: skip
    assert code == 0, out
    assert "24 training and 8 test pairs" in out and "64 um patches" in out
    assert len(list((data / "IHC" / "test").glob("*.png"))) == 8

    model = tmp_path / "her2.safetensors"
    report = tmp_path / "report"
    code, out = _invoke(
        "her2", "train", "--data", str(data), "--out", str(model), "--config", "demo",
        "--gan-epochs", "1", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
        "--ablations", "--demo", "--report", str(report),
    )  # fmt: skip
    assert code == 0, out
    assert "24 training / 8 test pairs" in out and "DEMO" in out
    assert "Test split" in out and "Ablation: without CAM" in out and "model written to" in out
    written = json.loads((report / "report.json").read_text())
    assert set(written["test"]) == {
        "dual",
        "he-only-synthesised-ihc",
        "ihc-only",
        "he-only-no-synthesis",
        "ihc-only-no-synthesis",
    }
    assert set(written["test_without_cam"]) == {"dual", "he-only-synthesised-ihc"}
    assert "## Ablation: without channel attention (CAM)" in (report / "report.md").read_text()
    loaded = load_her2(model)
    assert loaded.info.demo and loaded.info.config.tile_um == 64.0 and loaded.info.use_cam
    assert loaded.info.training["data"]["train_pairs"] == 24

    code, out = _invoke(
        "her2", "evaluate", "--model", str(model), "--data", str(data), "--device", "cpu",
        "--out", str(tmp_path / "eval"),
    )  # fmt: skip
    assert code == 0, out
    assert "he-only-synthesised-ihc" in out and "Macro-F1" in out
    assert (tmp_path / "eval" / "report.md").is_file()


def test_her2_commands_fail_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "bci"
    assert _invoke("her2", "synth", "--out", str(data), "--train", "4", "--test", "4",
                   "--size-px", "32")[0] == 0  # fmt: skip
    code, out = _invoke("her2", "synth", "--out", str(data))
    assert code == 2 and "is not empty" in out

    real_like = tmp_path / "bci-no-marker"
    shutil.copytree(data, real_like)
    (real_like / SYNTHETIC_MARKER).unlink()
    code, out = _invoke("her2", "train", "--data", str(real_like), "--out", str(tmp_path / "m.pt"))
    assert code == 2 and "give --patch-um" in out and "Traceback" not in out

    code, out = _invoke("her2", "train", "--data", str(data), "--out", str(tmp_path / "m.bin"))
    assert code == 2 and ".safetensors, .pt or .pth" in out

    code, out = _invoke("her2", "train", "--data", str(tmp_path / "nothing"), "--out", "m.pt")
    assert code == 2 and "no such folder" in out

    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"junk")
    code, out = _invoke("her2", "evaluate", "--model", str(junk), "--data", str(data))
    assert code == 2 and "not a readable safetensors file" in out and "Traceback" not in out
