"""``ihgamp config check``: validation, and what scoring will run on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gateway.cli.app import app
from support.gateway import settings_dict, write_toml

pytestmark = pytest.mark.unit
runner = CliRunner()


def _check(path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["config", "check", "--config", str(path)])
    return result.exit_code, " ".join(result.output.split())


def test_reports_torch_cuda_and_the_resolved_device(tmp_path: Path) -> None:
    data = settings_dict(tmp_path)
    data["model"]["device"] = "auto"
    code, output = _check(write_toml(tmp_path / "gw.toml", data))
    assert code == 0, output
    assert f"torch {torch.__version__} (CUDA runtime {torch.version.cuda or 'none'})" in output
    assert f"torch.cuda.is_available(): {torch.cuda.is_available()}" in output
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"model.device auto -> {expected}" in output
    assert output.endswith("configuration is valid")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a visible GPU")
def test_a_cuda_device_that_is_not_there_is_a_clean_error(tmp_path: Path) -> None:
    data = settings_dict(tmp_path)
    data["model"]["device"] = "cuda"
    code, output = _check(write_toml(tmp_path / "gw.toml", data))
    assert code == 2, output
    assert "error: --device cuda was requested but no CUDA device is visible" in output
    assert "Traceback" not in output and "configuration is valid" not in output
