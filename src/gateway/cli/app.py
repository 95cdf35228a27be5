"""The ``ihgamp`` command: one sub-command per file in this package."""

from __future__ import annotations

import typer

from ihgamp_core import __version__

from ..analyses.demo_cli import demo, sample_data
from .access import audit, sessions
from .db import db_app
from .retrieve import find, retrieve
from .score import score
from .serve import config_app, serve
from .status import complete, redispatch, rescore, status

__all__ = ["app", "main"]

app = typer.Typer(
    name="ihgamp",
    help=(
        "IHGAMP pathology AI gateway: receives images over DICOM, runs the enabled analyses "
        "on them (`[analyses] enabled`; docs/analyses.md) and returns DICOM SR, maps and FHIR "
        "results. Screening and triage aids to prioritise confirmatory testing, not companion "
        "diagnostics."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ihgamp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """IHGAMP pathology AI gateway."""


app.command("serve")(serve)
app.command("status")(status)
app.command("rescore")(rescore)
app.command("complete")(complete)
app.command("redispatch")(redispatch)
app.command("audit")(audit)
app.command("sessions")(sessions)
app.command("find")(find)
app.command("retrieve")(retrieve)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")
app.command("score")(score)
app.command("demo")(demo)
app.command("sample-data")(sample_data)


def _analysis_commands() -> None:
    """Mount each registered analysis' own commands (``ihgamp <analysis> ...``).

    The built-ins and the analyses installed packages publish (entry points) are known
    before any configuration is read; a module named only in ``[analyses] plugins`` is
    not (its commands, if any, are run with ``python -m``). A plug-in that cannot be
    imported is reported when the configuration is loaded, not here.
    """
    import contextlib
    import importlib

    from ..analyses import PluginError, entries, load_plugins

    with contextlib.suppress(PluginError):
        load_plugins()
    for item in entries():
        if item.cli:
            module, _, attribute = item.cli.partition(":")
            app.add_typer(getattr(importlib.import_module(module), attribute), name=item.name)


_analysis_commands()


def main() -> None:
    """Entry point of the ``ihgamp`` console script."""
    app()
