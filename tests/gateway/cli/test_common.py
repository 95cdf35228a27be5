"""Shared CLI pieces: ``handle_errors`` shows tracebacks only with ``IHGAMP_DEBUG=1``."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from gateway.cli.common import handle_errors, setup_logging

pytestmark = pytest.mark.unit

runner = CliRunner()


def _failing_app() -> typer.Typer:
    """A one-command app whose command fails the way a bug would."""
    failing = typer.Typer()

    @failing.command()
    @handle_errors
    def broken() -> None:
        setup_logging()  # as every command does: a log handler is attached
        raise RuntimeError("an unexpected failure")

    return failing


@pytest.mark.parametrize("debug", [None, "0"])
def test_handle_errors_prints_no_traceback_without_debug(
    monkeypatch: pytest.MonkeyPatch, debug: str | None
) -> None:
    if debug is None:
        monkeypatch.delenv("IHGAMP_DEBUG", raising=False)
    else:
        monkeypatch.setenv("IHGAMP_DEBUG", debug)
    result = runner.invoke(_failing_app(), [])
    assert result.exit_code == 1
    assert "Traceback" not in result.output, result.output
    assert "error: unexpected RuntimeError: an unexpected failure" in result.output
    assert "IHGAMP_DEBUG=1" in result.output


def test_handle_errors_lets_the_traceback_through_with_debug(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IHGAMP_DEBUG", "1")
    result = runner.invoke(_failing_app(), [])
    assert isinstance(result.exception, RuntimeError)  # uncaught: Python prints its traceback


def test_every_command_is_wrapped_by_handle_errors() -> None:
    import importlib

    import typer

    from gateway.cli.app import COMMANDS, analysis_commands

    wrapper_code = handle_errors(lambda: None).__code__
    targets = [(c.name, c.target) for c in COMMANDS] + list(analysis_commands().items())
    commands = []
    for name, target in targets:
        module, _, attribute = target.partition(":")
        found = getattr(importlib.import_module(module), attribute)
        if isinstance(found, typer.Typer):
            commands += [(f"{name} {c.name}", c.callback) for c in found.registered_commands]
        else:
            commands.append((name, found))
    assert len(commands) > 20
    for name, callback in commands:
        assert getattr(callback, "__code__", None) is wrapper_code, name


def test_the_command_line_and_the_service_load_without_torch() -> None:
    """A receiver/dispatcher/api node never imports torch (600 MB it would not use)."""
    import subprocess
    import sys

    code = (
        "import sys, gateway.cli.app, gateway.cli.serve, gateway.service; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout[:300]


def _render(*items: object) -> str:
    from rich.console import Console

    out = Console(width=200, record=True, color_system=None)
    for item in items:
        out.print(item)
    return out.export_text()


def test_the_results_table_shows_any_analysis_outcome() -> None:
    """One generic table: any analysis' request, its slides, call, value, path and model."""
    from gateway.cli.common import DEMO_NOTICE, ResultRow, model_lines, results_table
    from ihgamp_core.analysis import AnalysisOutcome, ModalityPath

    block = ResultRow(
        "ki67:B1",
        ("he.svs (he)", "ihc.svs (ihc)"),
        AnalysisOutcome("ki67", "ki67-high", 0.4567, (), "ki67|v3", False, ModalityPath.DUAL),
    )
    case = ResultRow(
        "C7",
        ("a.svs",),
        AnalysisOutcome("tissue", "no-call", None, ("too-few-tiles",), "head|v2", True),
        "Head v2",
    )
    rows = [" ".join(line.split()) for line in _render(results_table([block, case])).splitlines()]
    assert "│ ki67 │ ki67:B1 │ he.svs (he) │ ki67-high │ 0.457 │ dual │ none │ - │" in rows
    assert "│ │ │ ihc.svs (ihc) │ │ │ │ │ │" in rows
    assert "│ tissue │ C7 │ a.svs │ no-call │ - │ - │ too-few-tiles │ DEMO │" in rows
    lines = _render(model_lines(block, case, case)).splitlines()
    assert lines == [
        "ki67 model: ki67|v3",
        f"tissue model: Head v2 ({DEMO_NOTICE})",
        "  key: head|v2",
    ]
