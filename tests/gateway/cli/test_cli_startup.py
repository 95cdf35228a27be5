"""The command line starts fast: ``--version`` and ``--help`` import no command, and
``ihgamp status`` reads the catalog without pydicom, numpy or any model library.

Guarded by what each path imports (the interpreter's modules after the command), not by
wall time: a module list does not depend on how loaded the machine is. The commands' help
lines are declared once in ``gateway.cli.app`` so ``--help`` need not import them; a test
holds them equal to the commands' own.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.app import COMMANDS, analysis_commands, app, load
from support.gateway import settings_dict, write_toml

pytestmark = pytest.mark.unit

#: Libraries no quick command needs (and the gateway's own heavy parts).
HEAVY = {"torch", "open_clip", "scipy", "fastapi", "highdicom", "pydicom", "numpy", "PIL"}
HEAVY |= {"celery", "wsidicom", "openslide", "ihgamp_core.embed", "gateway.service"}
#: Besides, --version and --help read no configuration and open no database.
STARTUP = HEAVY | {"sqlalchemy", "pydantic", "gateway.config", "gateway.catalog"}


def _imported(*args: str) -> set[str]:
    """The modules loaded by running ``ihgamp ARGS`` in a fresh interpreter (sys.modules)."""
    code = (
        "import runpy, sys\n"
        "out, sys.argv = sys.argv[1], ['ihgamp', *sys.argv[2:]]\n"
        "try:\n"
        "    runpy.run_module('gateway.cli', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "open(out, 'w').write('\\n'.join(sys.modules))\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "modules.txt"
        proc = subprocess.run(
            [sys.executable, "-c", code, str(listing), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return set(listing.read_text().split())


@pytest.mark.parametrize("args", [("--version",), ("--help",)])
def test_version_and_help_import_no_command(args: tuple[str, ...]) -> None:
    imported = _imported(*args)
    assert "gateway.cli.app" in imported
    assert not imported & STARTUP, sorted(imported & STARTUP)
    assert not {c.target.split(":")[0] for c in COMMANDS} & imported


def test_status_reads_the_catalog_without_pixel_or_model_libraries(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "gw.toml", settings_dict(tmp_path))
    imported = _imported("status", "--config", str(config))
    assert {"gateway.cli.status", "sqlalchemy"} <= imported
    assert not imported & HEAVY, sorted(imported & HEAVY)


def test_the_declared_help_lines_are_the_commands_own() -> None:
    for command in COMMANDS:
        loaded = load(command.name, command.target)
        assert loaded.get_short_help_str(limit=300) == command.help, command.name


def test_analysis_commands_are_listed_from_entry_points_and_run() -> None:
    assert {"hrd", "her2"} <= set(analysis_commands())
    runner = CliRunner()
    listing = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0
    assert "The hrd analysis' own commands" in listing.output
    hrd = runner.invoke(app, ["hrd", "--help"], env={"COLUMNS": "200"})
    assert hrd.exit_code == 0 and "import-head" in hrd.output
    unknown = runner.invoke(app, ["no-such-command"])
    assert unknown.exit_code == 2 and "No such command" in unknown.output
